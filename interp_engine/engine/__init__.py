"""Python faces of the compiled core: conversion of numpy/torch arrays,
validation with clear errors, and the accumulator classes."""

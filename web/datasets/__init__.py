"""Datasets: importing archives as jobs, looking through and curating datasets, the dataset commands."""

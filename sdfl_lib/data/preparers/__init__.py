"""One module per family of data sets; `sdfl_lib.data.prepare` holds the registry."""

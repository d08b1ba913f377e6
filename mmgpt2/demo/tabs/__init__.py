"""One module per demo tab, each with `build(gr, registry, limits)`."""

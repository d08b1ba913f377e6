"""One package per application; each holds everything that is only its own."""

"""Examples the demo and the tests run on."""

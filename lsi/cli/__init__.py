"""The ``lsi`` command line (:mod:`lsi.cli.main`) and the demo. Nothing in the library imports it."""

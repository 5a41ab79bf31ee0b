"""Media: open files and streams, decode them with PyAV, cut them into time-aligned segments. Imports nothing
of the other rooms."""

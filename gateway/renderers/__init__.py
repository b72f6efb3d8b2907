"""Client protocols as renderers of :mod:`gateway.events`: each turns the typed events of
the live path, the file path and the connection into its own messages. Adding a live
protocol means adding one renderer here and its route (see :mod:`gateway.connection`)."""

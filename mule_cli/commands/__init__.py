"""One module per subcommand; each parses options and calls a plain library function."""

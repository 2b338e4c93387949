"""Table maintenance: a job that compacts and cleans every lake table, and its schedule."""

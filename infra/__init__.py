"""Development and test infrastructure: fetch scripts and launchers for real servers."""

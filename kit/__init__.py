"""What every stage shares: the error hierarchy, the file format's names, atomic files."""

"""Read a corpus slice, embed it, write a shard. Plain Python: no scheduler knowledge here."""

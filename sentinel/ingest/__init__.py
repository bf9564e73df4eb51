"""Accept agent batches: validate, drop duplicates, store, tell the loops what arrived."""

"""Communication: allreduce averaging, payload gathering, the RMA parameter store."""

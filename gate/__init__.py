"""The REST gate: the child process every worker's REST call goes through."""

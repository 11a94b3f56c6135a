"""What every child process of the master shares: its start-up and its link to the master."""

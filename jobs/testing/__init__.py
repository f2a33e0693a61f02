"""Real local stand-ins the tests and benchmarks share: synthetic run folders, a throwaway sshd."""

"""Local clusters for demos, tests and benchmarks: start members from a mirror file
(launcher), or build a whole mirror through the host agents from a build plan (plan, build,
hosts, watch); free loopback ports for throwaway mirrors (ports).
"""

"""How engine processes talk: the length-prefixed frame codec (protocol), TLS contexts and
throwaway certificates (tls, tls_cli), and where an instance's admin token is read
(admin_token).  The bottom layer beside the rule catalog: it imports nothing else of the engine.
"""

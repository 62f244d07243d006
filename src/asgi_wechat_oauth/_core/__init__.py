"""The machinery every product shares and that knows no product.

Single flight over a backend (:mod:`.singleflight`), work detached from the request that started
it (:mod:`.detached`), errors with stable reasons (:mod:`.errors`), signed state
(:mod:`.state`), callback parsing (:mod:`.callback`), counters, log redaction and the ASGI type
aliases. The products (``web``, ``miniprogram``, ``wecom``, ``tokens``) are thin layers over it.
"""

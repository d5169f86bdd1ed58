"""HTTP for every plugin that speaks it: one transport, one failure type, bounded answers.

    transport   Transport.send(): pooled urllib3 connections kept alive, one deadline per
                exchange, the body capped after decompression; HttpFailure(kind); scrub/excerpt
    body        the deadline reaper and the bounded reader (gzip/deflate counted after decoding)
    fetch       sources (scrape, prometheus, http_json): HttpFailure -> SourceError(kind)
    scrapeloop  the scrape source's GETs: one asyncio loop thread, a kept-alive connection per
                target, `concurrency` in flight, one deadline each; answers read by `wire`
    wire        a strict HTTP/1.1 response reader without I/O (caps on head, framing, body)
    client      webhook delivery (actuator and alerters); HttpOptions = endpoint + TlsOptions + RetryOptions
    rest        JSON APIs of actuators (MLflow, Kubernetes, verify URLs): status and parsed body
"""

"""RTP media library: packets, jitter buffer, codecs, SRTP, ports, receiver."""

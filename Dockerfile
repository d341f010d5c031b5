# ewgw container image: the static ewgw binary and nothing else.
#
# Build it with `make image` (scripts/image.sh): that compiles bin/ewgw with
# CGO_ENABLED=0 and hands docker a build context holding only bin/ewgw.
# FROM scratch pulls no base image, so the build works offline. From the
# repository root, `docker build .` works too (.dockerignore sends only
# bin/ewgw), provided bin/ewgw was built with CGO_ENABLED=0.
#
# The image has no shell, no libc and no writable path: it runs as a numeric
# non-root user with a read-only root filesystem. The gateway reads its
# config (/etc/ewgw/ewgw.yaml by default) and identity files from mounts and
# writes nothing but logs to stderr.
FROM scratch
LABEL org.opencontainers.image.title="ewgw" \
      org.opencontainers.image.description="East-west gateway between Kubernetes clusters" \
      org.opencontainers.image.source="https://github.com/ewgw/ewgw"
# Mode 0555 and root ownership come from the build context (scripts/image.sh):
# the runtime user can execute the binary but not change it.
COPY bin/ewgw /ewgw
# 65532 is the conventional "nonroot" uid/gid of distroless images.
USER 65532:65532
# 15443: the gateway listener, TCP for clients and UDP (QUIC) for peers.
# 15000: admin (/healthz, /readyz, /metrics, /status); set admin.listen to
# ":15000" in a container, the default 127.0.0.1:15000 is unreachable.
EXPOSE 15443/tcp 15443/udp 15000/tcp
ENTRYPOINT ["/ewgw"]
CMD ["run", "--config", "/etc/ewgw/ewgw.yaml"]

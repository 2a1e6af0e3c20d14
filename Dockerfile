# tollgate on an empty base: the static binary, the CA certificates and a
# non-root user, nothing else, so it builds without pulling an image.
#   make image     # or: make image IMAGE=registry.example.com/tollgate:v1 PODMAN=docker
# builds bin/image/rootfs (the binary with CGO_ENABLED=0 and the version from
# `git describe`, the host's /etc/ssl/certs/ca-certificates.crt, passwd and
# group files naming uid and gid 65532, as distroless's `nonroot`) and runs
#   podman build -f Dockerfile --build-arg VERSION=... -t tollgate:VERSION bin/image
#
# The broker runs as uid 65532 (numeric, so Kubernetes' runAsNonRoot can
# check it). The files it reads must be readable by that uid, and `tollgate
# keygen` writes keys 0600: give the configuration directory to it, and set
# state_dir: /var/lib/tollgate in config.yaml (the image's writable place;
# a volume mounted there starts with its owner):
#   chown -R 65532:65532 /etc/tollgate
#   podman run -p 5001:5001 -v /etc/tollgate:/etc/tollgate:ro tollgate:VERSION
# or run it as the files' owner (--user UID:GID) with a state_dir that user
# can write. docs/operations.md ("Container") has the whole sequence.
FROM scratch
COPY rootfs/ /
# /var/lib/tollgate, 0700, the broker's user's.
COPY --chown=65532:65532 state/ /var/lib/
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.title="tollgate" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
USER 65532:65532
EXPOSE 5001
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve", "--config", "/etc/tollgate/config.yaml"]

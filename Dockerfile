# canarylab's container image, for users with a container engine:
#
#   docker build -t canarylab/canarylab:dev \
#     --build-arg VERSION=$(git describe --tags --always) --build-arg REVISION=$(git rev-parse HEAD) .
#
# `make image` builds the same image without one (package image), and
# image/image_test.go holds this file to it: an empty base, the static binary
# at /canarylab, user 65532:65532, the OCI labels.

# The Go release the project builds with (go.mod).
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# The modules first, so that a change to the code reuses their layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=
# Static, since the final image has no libc and no loader; trimmed paths,
# so the binary does not depend on where it was built; the version and
# commit that `canarylab version` prints.
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${REVISION}" \
      -o /out/canarylab ./cmd/canarylab

FROM scratch
ARG VERSION=dev
ARG REVISION=
# The repository declares no license yet: NOASSERTION (SPDX) rather than a
# guess.
LABEL org.opencontainers.image.title="canarylab" \
      org.opencontainers.image.source="https://github.com/canarylab/canarylab" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="NOASSERTION"
# Owned by root and not writable by the user that runs it.
COPY --from=build --chmod=0755 /out/canarylab /canarylab
# distroless's nonroot: Kubernetes' runAsNonRoot accepts a numeric user.
USER 65532:65532
ENTRYPOINT ["/canarylab"]

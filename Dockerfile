# tollgate: a static binary on a distroless base, running as a non-root user.
#   docker build -t tollgate .
#   docker run -p 5001:5001 -v /etc/tollgate:/etc/tollgate:ro tollgate serve --config /etc/tollgate/config.yaml
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tollgate ./cmd/tollgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tollgate /usr/local/bin/tollgate
USER nonroot:nonroot
EXPOSE 5001
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve", "--config", "/etc/tollgate/config.yaml"]

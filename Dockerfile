# Production image of the dispatcher backend (pure Go: no cgo needed).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/amodispatch/amodispatch/backend/internal/app.Version=${VERSION}" \
      -o /out/dispatcher ./backend/cmd/dispatcher \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/dispatcher /dispatcher
# DATA_DIR must be writable by the nonroot user for the embedded SQLite
# database and its generated key (a volume mounted here keeps this owner).
COPY --from=build --chown=nonroot:nonroot /out/data /data
ENV LISTEN_ADDR=:8080 DATA_DIR=/data
EXPOSE 8080
VOLUME /data
HEALTHCHECK --interval=10s --timeout=5s --retries=6 CMD ["/dispatcher", "healthcheck"]
ENTRYPOINT ["/dispatcher"]
CMD ["serve"]

# Production image of the dispatcher backend (pure Go: no cgo needed).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/dispatcher ./backend/cmd/dispatcher

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/dispatcher /dispatcher
ENV LISTEN_ADDR=:8080 DATA_DIR=/data
EXPOSE 8080
ENTRYPOINT ["/dispatcher"]
CMD ["serve"]

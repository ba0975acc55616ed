# One image per service: docker build --build-arg SERVICE=receiver .
# docker-compose.yml builds every service from this file.
FROM golang:1.26 AS build
ARG SERVICE
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/app ./services/${SERVICE} \
 && CGO_ENABLED=0 go build -trimpath -o /out/reviewctl ./services/reviewctl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/app /app
COPY --from=build /out/reviewctl /reviewctl
ENTRYPOINT ["/app"]

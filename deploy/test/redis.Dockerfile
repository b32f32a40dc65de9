# Stands in for the official redis image in `make test-compose` (no registry is reachable):
# Debian's Redis on the locally made base, listening for the other containers.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]

# Stands in for the official postgres image in `make test-compose`, where no image registry is
# reachable: Debian's PostgreSQL 15 on the locally made base, honouring the same POSTGRES_*
# variables, data directory and pg_isready health check that docker-compose.yml relies on.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]

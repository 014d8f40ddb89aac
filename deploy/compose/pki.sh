#!/bin/sh
# pki.sh [root]: the compose estate's dev PKI. The one-shot `pki` service of docker-compose.yml
# runs it (image: packages/pki/Dockerfile) with each folder below a named volume; the test
# (test/src/compose.test.ts) runs it into a temporary folder and checks what it writes.
#
#   <root>/ca        the CA with its key, and every certificate and key: only this job mounts it
#   <root>/<zone>    ca.crt, <zone>-bsfg.crt and <zone>-bsfg.key: what the zone's containers mount
#                    read-only at /etc/bsfg/pki (no zone sees another zone's key, or the CA's)
#   <root>/clients   ca.crt and the client identities (producers, the demo viewer), for clients
#                    outside the containers: docker cp them out (README, "Containers")
#   <root>/<zone>-nats  the zone's nats-server: its certificate and key (it speaks only TLS) and
#                    auth.conf, the one user it lets in; <root>/<zone>/nats.password is that
#                    user's password, which the zone's containers log in with (docs/security.md,
#                    "The substrate"). Made once, kept while the volume lives.
#
# Server certificates name every container a zone serves from, as peers and clients dial it
# (https://idmz-egress:8445 …), plus localhost for the ports published on the host. The IDMZ's
# also names idmz-sync: outbound-only PlantA dials its reverse listener (https://idmz-sync:8447),
# which presents the zone's certificate.
# A second run reuses what is still valid (bsfg-dev-pki is idempotent).
# BSFG_PKI_OWNER (uid:gid) hands the zone and client folders to the services' user.
set -eu
root=${1:-/pki}
cli=${BSFG_DEV_PKI_JS:-/app/dist/cli.js}

node "$cli" "$root/ca" \
  enterprise-bsfg:both=enterprise-ingest,enterprise-egress,enterprise-ledger,enterprise-zone,localhost \
  idmz-bsfg:both=idmz-ingest,idmz-egress,idmz-ledger,idmz-sync,idmz-zone,localhost \
  plant-a-bsfg:both=plant-a-ingest,plant-a-egress,plant-a-ledger,plant-a-zone,localhost \
  mes-producer:client erp-producer:client enterprise-viewer:client estate-operator:client \
  enterprise-nats:server=enterprise-nats-1,enterprise-nats-2,enterprise-nats-3 \
  idmz-nats:server=idmz-nats \
  plant-a-nats:server=plant-a-nats

publish() { # <folder> <identity>…
  folder=$root/$1
  shift
  mkdir -p "$folder"
  cp "$root/ca/ca.crt" "$folder/ca.crt"
  for identity in "$@"; do
    cp "$root/ca/$identity.crt" "$root/ca/$identity.key" "$folder/"
    chmod 600 "$folder/$identity.key"
  done
  if [ -n "${BSFG_PKI_OWNER:-}" ]; then chown -R "$BSFG_PKI_OWNER" "$folder"; fi
}
publish enterprise enterprise-bsfg
publish idmz idmz-bsfg
publish plant-a plant-a-bsfg
publish clients mes-producer erp-producer enterprise-viewer estate-operator

nats_login() { # <zone>: the zone's NATS user; its password beside the zone's certificate, auth.conf beside the server's
  zone=$1
  password_file=$root/$zone/nats.password
  if [ ! -s "$password_file" ]; then
    node -e 'process.stdout.write(require("node:crypto").randomBytes(24).toString("base64url") + "\n")' > "$password_file"
  fi
  chmod 600 "$password_file"
  if [ -n "${BSFG_PKI_OWNER:-}" ]; then chown "$BSFG_PKI_OWNER" "$password_file"; fi
  folder=$root/$zone-nats
  mkdir -p "$folder"
  cp "$root/ca/$zone-nats.crt" "$root/ca/$zone-nats.key" "$folder/"
  chmod 600 "$folder/$zone-nats.key"
  printf 'authorization { user: "bsfg-%s", password: "%s" }\n' "$zone" "$(cat "$password_file")" > "$folder/auth.conf"
  chmod 600 "$folder/auth.conf"
}
nats_login enterprise
nats_login idmz
nats_login plant-a
echo "pki: zone folders and clients written under $root"

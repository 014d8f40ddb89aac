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
  mes-producer:client erp-producer:client enterprise-viewer:client estate-operator:client

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
echo "pki: zone folders and clients written under $root"

#!/bin/sh
# A store's private certificate authority for its MQTT broker, with the openssl command line only.
# docs/security.md explains when to use which; tests/integration/test_tls.py runs this script.
#
#   lane-pki.sh ca DIR                  DIR/ca.crt and DIR/ca.key (keep ca.key off the broker)
#   lane-pki.sh server DIR NAME SAN...  DIR/NAME.crt and DIR/NAME.key for the broker; each SAN is
#                                       DNS:<name> or IP:<address>, as lanes and POS screens
#                                       write the broker's address (mqtt.host)
#   lane-pki.sh client DIR CN           DIR/CN.crt and DIR/CN.key for a lane; CN is the lane's
#                                       MQTT user name, i.e. its lane id ([lane] lane)
#
# DIR holds the CA (ca.crt, ca.key). Keys are P-256, unencrypted, mode 0600. DAYS sets the
# validity of new certificates (default 825 days; the CA gets ten times as long).
set -eu

usage() {
  sed -n '5,10s/^# //p' "$0" >&2
  exit 2
}
[ $# -ge 2 ] || usage
cmd=$1
dir=$2
shift 2
days=${DAYS:-825}
umask 077
mkdir -p "$dir"
ext=$(mktemp)
trap 'rm -f "$ext"' EXIT

# sign NAME: the CSR in $dir/NAME.csr -> $dir/NAME.crt, with the extensions in $ext.
sign() {
  openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days "$days" -sha256 -extfile "$ext" -out "$dir/$1.crt" 2>/dev/null
  rm -f "$dir/$1.csr"
  chmod 0644 "$dir/$1.crt"
}

# request NAME CN: a new key $dir/NAME.key and its CSR $dir/NAME.csr.
request() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/$1.key" -subj "/CN=$2" -out "$dir/$1.csr" 2>/dev/null
}

case $cmd in
ca)
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/ca.key" -subj "/CN=lane-agent store CA" -days "$((days * 10))" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$dir/ca.crt" 2>/dev/null
  chmod 0644 "$dir/ca.crt"
  ;;
server)
  [ $# -ge 2 ] || usage
  name=$1
  shift
  sans=$(printf '%s,' "$@")
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" "subjectAltName=${sans%,}" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >"$ext"
  request "$name" "$name"
  sign "$name"
  ;;
client)
  [ $# -eq 1 ] || usage
  case $1 in */* | *+* | *#*) echo "lane-pki.sh: CN must not contain / + #" >&2 && exit 2 ;; esac
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=clientAuth" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >"$ext"
  request "$1" "$1"
  sign "$1"
  ;;
*)
  usage
  ;;
esac

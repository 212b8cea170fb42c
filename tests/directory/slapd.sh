# A throwaway OpenLDAP server for tests (sourced): Debian's slapd on loopback ports of its own,
# an mdb database under the test's directory, loaded with slapadd before it starts; ldap:// (with
# StartTLS) and ldaps:// with a self-signed certificate for 127.0.0.1.
#   slapd_start DIR SUFFIX LDIF   # sets SLAPD_URL, SLAPD_LDAPS_URL and SLAPD_CA (the certificate to
#                                 # trust); the admin is cn=admin,SUFFIX, password in DIR/bind.password
#   slapd_stop                    # and slapd_start DIR again (no LDIF) restarts it on the same ports
slapd_start() {
    SLAPD_DIR=$1
    if [ $# -ge 3 ]; then
        SLAPD_SUFFIX=$2
        SLAPD_PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        SLAPD_TLS_PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        mkdir -p "$SLAPD_DIR/db"
        echo directory-secret > "$SLAPD_DIR/bind.password"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=127.0.0.1" \
            -addext "subjectAltName=IP:127.0.0.1" -keyout "$SLAPD_DIR/tls.key" -out "$SLAPD_DIR/tls.pem" 2>/dev/null
        cat > "$SLAPD_DIR/slapd.conf" <<CONF
TLSCertificateFile $SLAPD_DIR/tls.pem
TLSCertificateKeyFile $SLAPD_DIR/tls.key
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $SLAPD_DIR/slapd.pid
database mdb
maxsize 1073741824
suffix "$SLAPD_SUFFIX"
rootdn "cn=admin,$SLAPD_SUFFIX"
rootpw directory-secret
directory $SLAPD_DIR/db
index objectClass eq
CONF
        slapadd -q -f "$SLAPD_DIR/slapd.conf" -l "$3" >"$SLAPD_DIR/slapadd.log" 2>&1 || { echo "slapadd failed: $(cat "$SLAPD_DIR/slapadd.log")"; return 1; }
    fi
    SLAPD_URL="ldap://127.0.0.1:$SLAPD_PORT"
    SLAPD_LDAPS_URL="ldaps://127.0.0.1:$SLAPD_TLS_PORT"
    SLAPD_CA="$SLAPD_DIR/tls.pem"
    slapd -f "$SLAPD_DIR/slapd.conf" -h "$SLAPD_URL/ $SLAPD_LDAPS_URL/" >>"$SLAPD_DIR/slapd.log" 2>&1 || { echo "slapd failed: $(cat "$SLAPD_DIR/slapd.log")"; return 1; }
    for _ in $(seq 100); do
        ldapsearch -x -H "$SLAPD_URL" -b "$SLAPD_SUFFIX" -s base "(objectClass=*)" dn >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "slapd did not answer on $SLAPD_URL"; return 1
}

slapd_stop() {
    [ -n "${SLAPD_DIR:-}" ] && [ -f "$SLAPD_DIR/slapd.pid" ] || return 0
    kill "$(cat "$SLAPD_DIR/slapd.pid")" 2>/dev/null
    for _ in $(seq 100); do [ -f "$SLAPD_DIR/slapd.pid" ] || return 0; sleep 0.1; done
}

# LDIF of an organisational unit and of a person (uid, the unit's DN, cost centre, location).
ldif_ou() { printf 'dn: %s\nobjectClass: organizationalUnit\nou: %s\n\n' "$1" "$2"; }
ldif_person() {
    printf 'dn: uid=%s,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\ndepartmentNumber: %s\nl: %s\n' "$1" "$2" "$1" "$1" "$1" "$3" "$4"
    [ -n "${5:-}" ] && printf 'employeeType: %s\n' "$5"
    printf '\n'
}

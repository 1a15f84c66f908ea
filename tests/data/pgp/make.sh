#!/usr/bin/env bash
# Regenerates the OpenPGP public-key fixtures of src/pgp.rs's tests with
# Debian's GnuPG (2.2.40 made the committed ones). Public keys only: no
# secret key is committed (the end-to-end test makes its own at run time).
set -euo pipefail
cd "$(dirname "$0")"
home=$(mktemp -d); trap 'rm -rf "$home"' EXIT
g() { gpg --batch --quiet --homedir "$home" --pinentry-mode loopback --passphrase '' "$@"; }

# A key that could encrypt, made on 2020-01-01 and expired a day later
# (primary and encryption subkey): refused as expired.
g --faked-system-time 20200101T000000! --quick-gen-key 'Expired <expired@example.invalid>' ed25519 default 1d
fpr=$(g --list-keys --with-colons expired@example.invalid | awk -F: '/^fpr/{print $10; exit}')
g --quick-add-key --faked-system-time 20200101T000000! "$fpr" cv25519 encr 1d
g --armor --export expired@example.invalid > expired.asc

# A key with an encryption subkey whose primary key is revoked (gpg's own
# revocation certificate, from openpgp-revocs.d, imported).
g --quick-gen-key 'Revoked <revoked@example.invalid>' ed25519 default never
fpr=$(g --list-keys --with-colons revoked@example.invalid | awk -F: '/^fpr/{print $10; exit}')
g --quick-add-key "$fpr" cv25519 encr never
sed 's/^:-----BEGIN/-----BEGIN/' "$home/openpgp-revocs.d/$fpr.rev" > "$home/rev.asc"
g --import "$home/rev.asc"
g --armor --export revoked@example.invalid > revoked.asc

# A signing-only key: an ed25519 primary key (sign, certify), no subkey.
g --quick-gen-key 'Signing only <sign@example.invalid>' ed25519 sign never
g --armor --export sign@example.invalid > signing-only.asc

# A usable key (ed25519 primary, cv25519 encryption subkey), also as the
# base64 of the binary key (the Terraform `pgp_key` form).
g --quick-gen-key 'Usable <usable@example.invalid>' ed25519 default never
fpr=$(g --list-keys --with-colons usable@example.invalid | awk -F: '/^fpr/{print $10; exit}')
g --quick-add-key "$fpr" cv25519 encr never
g --armor --export usable@example.invalid > usable.asc
g --export usable@example.invalid | base64 -w0 > usable.b64

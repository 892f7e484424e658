//! The `--help` texts, one per subcommand.

pub const MAIN: &str = "\
ovtp - move messages and files between servers, end-to-end encrypted,
clients authorized by RSA key.

Usage: ovtp [--home DIR] COMMAND [OPTIONS] [ARGS]

Commands:
  keygen        make your key pair
  fingerprint   print a key's fingerprint
  serve         run a server
  authorize     add client public keys to the server's authorized_keys
  deauthorize   remove a client key from authorized_keys
  send          send a message to a server and print its response
  trust         record a server's key fingerprint in known_hosts
  put, get, digest
                file transfer (not yet available in this build)
  help [COMMAND]
Run `ovtp COMMAND --help` for each command's options.

The ovtp home holds id_rsa (private key, mode 0600), id_rsa.pub,
authorized_keys (servers) and known_hosts (clients). It is --home DIR if
given, else $OVTP_HOME, else ~/.ovtp; for serve, authorize and deauthorize
run as root (and neither given) it is /var/lib/ovtp.

Exit codes:
  0       success (send: the server answered status 0)
  1-62    send: the server answered this status
  63      send: the server answered status 63 or more (printed on stderr)
  1       deauthorize: the key was not present
  2       the command is not available in this build (put, get, digest)
  64      usage error (bad option or argument, message not UTF-8 without --data)
  65      server key unknown (not in known_hosts) or changed
  66      authentication refused: our key is not authorized, or a signature failed
  69      network: cannot connect or listen, connection lost, timeout, server busy
  74      local file problem: key or trust file missing, unreadable, invalid,
          or existing where it would be overwritten; stdin unreadable
  76      protocol error: version mismatch, malformed or tampered data
";

pub const KEYGEN: &str = "\
Usage: ovtp keygen [--bits 2048|3072|4096] [--force] [--key FILE] [--home DIR]

Make an RSA key pair: FILE (default HOME/id_rsa), PKCS#8 PEM, mode 0600,
and FILE.pub (SPKI PEM). Prints the paths and the fingerprint.
  --bits N     key size (default 3072)
  --force      replace an existing key (the old key is lost)
  --key FILE   where to write the private key
";

pub const FINGERPRINT: &str = "\
Usage: ovtp fingerprint [KEYFILE] [--home DIR]

Print the fingerprint (SHA256:...) of a public or private key file,
by default HOME/id_rsa.pub.
";

pub const SERVE: &str = "\
Usage: ovtp serve [OPTIONS]

Run a server. Without --exec it prints each message received on standard
output (text with control characters escaped, data as <N bytes>) and answers
status 0 \"ok\". A server key (HOME/id_rsa) is generated on first use.

  --listen ADDR           address to listen on (default 0.0.0.0:888). Ports
                          below 1024 need root or CAP_NET_BIND_SERVICE;
                          otherwise use e.g. --listen 127.0.0.1:8888
  --key FILE              server private key (default HOME/id_rsa)
  --authorized-keys FILE  client keys allowed in (default HOME/authorized_keys);
                          changes take effect without a restart
  --add-keys FILE|DIR...  add public keys (a directory: its *.pub and *.pem
                          files) to authorized_keys, report each, then serve
  --no-serve              with --add-keys: only add, then exit
  --dir DIR               directory for received files (for put/get, which
                          are not available in this build yet)
  --max-connections N     simultaneous connections (default 64)
  --handshake-timeout S   seconds for a handshake (default 10)
  --idle-timeout S        seconds a connection may stay idle (default 900)
  --max-message BYTES     largest message either way (default 16M; K/M/G ok)
  --exec CMD              run `sh -c CMD` for each message: the message on its
                          standard input, OVTP_CLIENT_FINGERPRINT, OVTP_PEER_ADDR
                          and OVTP_MESSAGE_TYPE (text|data) in its environment.
                          The reply is its exit status (killed: 1) and its
                          standard output (beyond --max-message: cut). Its
                          standard error goes to the server's.
  --exec-timeout S        kill the program after S seconds (default 30); the
                          reply is then status 1, \"timed out\"
  --stdin-close-stops     stop cleanly when standard input reaches end of file
  -q, --quiet             log only errors
  -v, --verbose           log more (settings, each program run)

Logs go to standard error, one line per event: UTC time, peer address, key
fingerprint, what, bytes, duration, outcome. The first line is
\"listening on ADDR\".

Stopping: ovtp cannot catch SIGINT/SIGTERM (no signal API in std, and it
uses no unsafe code), so Ctrl-C or kill ends the process at once; key and
trust files are written atomically, so nothing is left half-written, but
requests in flight are cut off. For a clean stop (finish requests in flight,
then exit 0) run it with --stdin-close-stops and close its standard input.
";

pub const AUTHORIZE: &str = "\
Usage: ovtp authorize FILE|DIR... [--authorized-keys FILE] [--home DIR]

Add client public keys to authorized_keys (default HOME/authorized_keys): a
file, or each *.pub and *.pem file in a directory. Reports each key as
\"added\" or \"already present\" with its fingerprint. A running server sees
the change at its next connection.
";

pub const DEAUTHORIZE: &str = "\
Usage: ovtp deauthorize FINGERPRINT [--authorized-keys FILE] [--home DIR]

Remove the client key with this fingerprint (SHA256:...) from
authorized_keys. A running server refuses it from its next connection.
Exit code 1 if it was not present.
";

pub const SEND: &str = "\
Usage: ovtp send HOST[:PORT] [MESSAGE|-] [OPTIONS]

Send a message (from standard input when MESSAGE is - or absent) and print
the server's response on standard output (on a terminal, with control
characters escaped). A non-zero status is printed on standard error and
becomes the exit code (see `ovtp --help`). The port defaults to 888.

  --data              send raw bytes (without it the message must be UTF-8)
  --accept-new        trust and record the server's key if the host is not yet
                      in known_hosts (a changed key is still refused)
  --fingerprint FP    accept only the server with this key fingerprint
  --key FILE          your private key (default HOME/id_rsa)
  --known-hosts FILE  default HOME/known_hosts
";

pub const TRUST: &str = "\
Usage: ovtp trust HOST[:PORT] FINGERPRINT [--known-hosts FILE] [--home DIR]

Record that the server HOST:PORT (port default 888) has the key FINGERPRINT.
A host already recorded with another key is refused: if its key changed
legitimately, delete the old line (the message names the file and line).
";

pub const PUT: &str = "\
Usage: ovtp put HOST[:PORT] FILE... [--to REMOTE]

Upload files. NOT YET AVAILABLE in this build: exits with code 2.
";

pub const GET: &str = "\
Usage: ovtp get HOST[:PORT] REMOTE [LOCAL]

Download a file. NOT YET AVAILABLE in this build: exits with code 2.
";

pub const DIGEST: &str = "\
Usage: ovtp digest HOST[:PORT] REMOTE

Print a remote file's size and SHA-256. NOT YET AVAILABLE in this build:
exits with code 2.
";

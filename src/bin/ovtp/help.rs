//! The `--help` texts, one per subcommand.

/// The options of every command that connects to a server.
macro_rules! connect_options {
    () => {
        "  --accept-new        trust and record the server's key if the host is not yet
                      in known_hosts (a changed key is still refused)
  --fingerprint FP    accept only the server with this key fingerprint
  --key FILE          your private key (default HOME/id_rsa)
  --known-hosts FILE  default HOME/known_hosts
"
    };
}

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
  put           upload files to a server
  get           download a file from a server
  digest        print a remote file's SHA-256 and size
  ls            list a directory of a server's files
  help [COMMAND]
Run `ovtp COMMAND --help` for each command's options.

The ovtp home holds id_rsa (private key, mode 0600), id_rsa.pub,
authorized_keys (servers) and known_hosts (clients). It is --home DIR if
given, else $OVTP_HOME, else ~/.ovtp; for serve, authorize and deauthorize
run as root (and neither given) it is /var/lib/ovtp.

Exit codes:
  0       success (send: the server answered status 0)
  1-62    send: the server answered this status; put, get, digest, ls: the
          server's own handler refused (or answered) with this status
  63      the same, for status 63 or more (printed on stderr)
  1       deauthorize: the key was not present
  64      usage error (bad option or argument, bad remote file name such as
          one with .., message not UTF-8 without --data)
  65      server key unknown (not in known_hosts) or changed
  66      authentication refused: our key is not authorized, or a signature failed
  67      the server refused or failed a file operation: it takes no files
          (started without --dir), bad name, no such file, file too large,
          server I/O error
  69      network: cannot connect or listen, connection lost, timeout, server busy
  73      the destination exists and was not replaced: put (on the server),
          get (the local file), keygen (the key file); --force replaces it
  74      local file problem: key or trust file missing, unreadable or invalid;
          a file to put missing or unreadable; get cannot write; stdin unreadable
  75      try again: a file arrived with the wrong length or SHA-256 (nothing
          was kept), changed during the transfer, or another transfer to the
          same name was in progress
  76      protocol error: version mismatch, malformed or tampered data, a
          listing with a name that is not a plain file name (../x, /abs, a/b)
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

  --listen ADDR           address to listen on (default: port 888 on IPv6 and
                          IPv4, [::]:888 and 0.0.0.0:888). Ports
                          below 1024 need root or CAP_NET_BIND_SERVICE;
                          otherwise use e.g. --listen 127.0.0.1:8888
  --key FILE              server private key (default HOME/id_rsa)
  --authorized-keys FILE  client keys allowed in (default HOME/authorized_keys);
                          changes take effect without a restart
  --add-keys FILE|DIR...  add public keys (a directory: its *.pub and *.pem
                          files) to authorized_keys, report each, then serve
  --no-serve              with --add-keys: only add, then exit
  --dir DIR               serve files: put, get, digest and ls work in
                          DIR (created, mode 0700, if missing). WITHOUT --dir
                          FILE TRANSFERS ARE OFF: the server refuses them.
                          Names are relative to DIR; names that lead outside
                          it (.., absolute, symlinks out) are refused. DIR is
                          refused if group or others can write it, or if it
                          holds the home, the key or authorized_keys
  --max-file-size BYTES   largest upload accepted (default: no limit; K/M/G ok)
  --max-connections N     simultaneous connections (default 64)
  --max-unauthenticated N of those, connections that have not yet proven an
                          authorized key (default 16, at most N above); when
                          full, the oldest is dropped, so strangers cannot
                          take the places of clients
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

Files (with --dir): every upload offered, file received (with its size and
SHA-256) and download or digest request is accepted and logged, one line
each. --exec is for messages only: file transfers do not run the program.
An upload arrives whole or not at all (written to a partial file
.HEX.ovtp-part beside its name that belongs to the uploading key, renamed
once all of it arrived); an interrupted upload's partial file is kept so
that the same client key, and no other, can resume it.

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

pub const SEND: &str = concat!(
    "\
Usage: ovtp send HOST[:PORT] [MESSAGE|-] [OPTIONS]

Send a message (from standard input when MESSAGE is - or absent) and print
the server's response on standard output (on a terminal, with control
characters escaped). A non-zero status is printed on standard error and
becomes the exit code (see `ovtp --help`). The port defaults to 888.

  --data              send raw bytes (without it the message must be UTF-8)
",
    connect_options!()
);

pub const TRUST: &str = "\
Usage: ovtp trust HOST[:PORT] FINGERPRINT [--known-hosts FILE] [--home DIR]

Record that the server HOST:PORT (port default 888) has the key FINGERPRINT.
A host already recorded with another key is refused: if its key changed
legitimately, delete the old line (the message names the file and line).
";

pub const PUT: &str = concat!(
    "\
Usage: ovtp put HOST[:PORT] FILE... [--to REMOTE] [OPTIONS]

Upload files into the server's files directory (see `ovtp serve --dir`),
each under its own file name, or as REMOTE with --to (one file). With
several files, or a REMOTE ending in /, --to names a directory: each FILE
goes to REMOTE/NAME. Remote names are relative, /-separated, without . or ..
components; missing directories are created on the server.

A file arrives whole or not at all: the server checks its length and
SHA-256 before giving it its name. For each file stored, prints
\"NAME  SIZE  SHA256\" on standard output (compare with `sha256sum FILE`);
a text the server answers with goes to standard error.

Resuming is the default: when an upload was interrupted (connection lost,
Ctrl-C), the same command again continues where it stopped, once the server
has checked that the part it holds is the start of FILE.

  --to REMOTE         remote name, or directory (see above)
  --force             replace a file that exists on the server (without it:
                      refused, exit code 73)
  --no-resume         start over instead of resuming a partial upload
  --verify            then ask the server for the stored file's SHA-256 and
                      compare it with FILE's (the server reads it back)
  -p, --preserve      give the stored file FILE's permission bits (never
                      setuid, setgid or sticky: at most 0777) and
                      modification time; without it, the server's (0600, now)
",
    connect_options!(),
    "
On a terminal, a line on standard error shows each file's progress: bytes,
percent, speed and time left. With several files, a file that fails
(refused, exists, unreadable) does not stop the others; the exit code is the
first failure's (see `ovtp --help`).
"
);

pub const GET: &str = concat!(
    "\
Usage: ovtp get HOST[:PORT] REMOTE [LOCAL] [OPTIONS]

Download REMOTE from the server's files directory to LOCAL: by default the
last component of REMOTE, in the current directory; if LOCAL is a directory
(or ends in /), into it under that name. The file is written to
.NAME.ovtp-part beside LOCAL and renamed only once all of it arrived, each
chunk authenticated in order, up to the announced length; then \"LOCAL  SIZE  SHA256\" is printed on standard output.

Resuming is the default: the same command again continues an interrupted
download from its partial file, once the server has checked that it is the
start of REMOTE.

  --force             replace LOCAL if it exists (without it: refused, exit
                      code 73)
  --no-resume         start over instead of resuming a partial download
  --verify            read the received file back before it gets its name
                      and compare its SHA-256 with the server's
  -p, --preserve      give LOCAL the remote file's permission bits (never
                      setuid, setgid or sticky: at most 0777) and
                      modification time, before it gets its name
",
    connect_options!(),
    "
On a terminal, a line on standard error shows the progress: bytes, percent,
speed and time left.
"
);

pub const DIGEST: &str = concat!(
    "\
Usage: ovtp digest HOST[:PORT] REMOTE [OPTIONS]

Print a remote file's SHA-256, size and name, as \"SHA256  SIZE  NAME\"
(the first column compares with `sha256sum FILE`). Nothing is transferred.

",
    connect_options!()
);

pub const LS: &str = concat!(
    "\
Usage: ovtp ls HOST[:PORT] [REMOTE_DIR] [-l] [OPTIONS]

List REMOTE_DIR of the server's files directory (default: its top), sorted
by name (bytewise), one name per line; directories end in /. Symbolic links
are listed, not followed; partial transfers and names no client could ask
for (not UTF-8, control characters) are left out.

  -l, --long          one entry per line as \"TYPE MODE SIZE MTIME NAME\",
                      separated by single spaces: TYPE is f (file), d
                      (directory), l (symbolic link) or ? (other); MODE four
                      octal digits; SIZE bytes (0 for all but files); MTIME
                      UTC as YYYY-MM-DDTHH:MM:SSZ; NAME the rest of the line
",
    connect_options!(),
    "
Every name the server lists is checked: one path component, not . or ..,
no /, no control characters. A listing with any other is refused as a
whole (exit code 76). The server's handler decides whether you may list.
"
);

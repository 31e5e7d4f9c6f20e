package event

// Event types of terminal and SSH sessions (issue 6). Like every type name, these are part of
// the stored format and of the API: never rename one.
const (
	// TerminalOutput is bytes a channel's client received (stdout, or stderr when Stream says
	// so), after masking: Data: TerminalData; Raw: the bytes.
	TerminalOutput Type = "terminal.output"
	// TerminalInput is bytes the client sent on a channel: Data: TerminalData; Raw: the bytes,
	// absent when Withheld (typed while the terminal did not echo, e.g. at a password prompt).
	TerminalInput Type = "terminal.input"
	// TerminalResize is a terminal's size: at pty-req (with Term) and at every window-change.
	// Data: TerminalSizeData.
	TerminalResize Type = "terminal.resize"
	// Exec is a program started on a channel: a shell, a command or a subsystem (sftp).
	// Data: ExecData.
	Exec Type = "exec"
	// ExecExit is how it ended: Data: ExitData.
	ExecExit Type = "exec.exit"
	// FileTransfer is one file operation of an sftp channel, or one scp or rsync copy: Data:
	// FileTransferData.
	FileTransfer Type = "file.transfer"
	// Forward is a forwarded TCP connection, recorded when it opens and when it closes (with
	// the bytes each way): Data: ForwardData.
	Forward Type = "forward"
	// ForwardBytes is bytes that went through a forwarded connection one way (kubectl
	// port-forward), recorded before they are passed on: Data: ForwardBytesData; Raw: the
	// bytes, absent once the connection's content kept that way reached the limit (the
	// closing forward event then has the length and SHA-256 of everything that crossed).
	ForwardBytes Type = "forward.data"
	// Denied is a request the gateway refused by policy (a port forward, agent forwarding, X11,
	// a command a guardrail denies): Data: DeniedData.
	Denied Type = "denied"
)

// TerminalData describes Raw of a terminal.output or terminal.input event.
type TerminalData struct {
	Channel uint32 `json:"channel"`          // the gateway's number for the channel within the session
	Stream  string `json:"stream,omitempty"` // "stderr" for extended data; "" is stdout/stdin
	Bytes   int    `json:"bytes"`            // length of the data (also when Raw is withheld)
	// Withheld marks input not kept (typed while the terminal did not echo).
	Withheld bool `json:"withheld,omitempty"`
	// Masked counts, per detector, the values masked in this output.
	Masked map[string]int `json:"masked,omitempty"`
}

// TerminalSizeData is a terminal's size in characters (and pixels when the client says).
type TerminalSizeData struct {
	Channel uint32 `json:"channel"`
	Cols    uint32 `json:"cols"`
	Rows    uint32 `json:"rows"`
	Width   uint32 `json:"width_px,omitempty"`
	Height  uint32 `json:"height_px,omitempty"`
	Term    string `json:"term,omitempty"` // TERM, at pty-req
}

// ExecData is a program started on a channel.
type ExecData struct {
	Channel   uint32            `json:"channel"`
	Kind      string            `json:"kind"`              // shell | exec | subsystem
	Command   string            `json:"command,omitempty"` // exec: the command line; subsystem: its name
	PTY       bool              `json:"pty"`
	Env       map[string]string `json:"env,omitempty"` // variables passed on (the allow-list)
	Login     string            `json:"login,omitempty"`
	Truncated bool              `json:"truncated,omitempty"`
}

// ExitData is how a channel's program ended: an exit status or a signal.
type ExitData struct {
	Channel uint32 `json:"channel"`
	Status  *int   `json:"status,omitempty"`
	Signal  string `json:"signal,omitempty"`
	Core    bool   `json:"core_dumped,omitempty"`
	Message string `json:"message,omitempty"`
}

// FileTransferData is one sftp operation. Bytes are what crossed for the file (read: target to
// client; write: client to target) between open and close.
type FileTransferData struct {
	Channel      uint32 `json:"channel"`
	Op           string `json:"op"` // read | write | remove | rename | mkdir | rmdir | setstat | symlink | opendir
	Path         string `json:"path"`
	NewPath      string `json:"new_path,omitempty"` // rename, symlink
	BytesRead    int64  `json:"bytes_read,omitempty"`
	BytesWritten int64  `json:"bytes_written,omitempty"`
	Status       string `json:"status,omitempty"` // ok, or the target's error
	// Tool is what moved the file: sftp (each operation is an event), scp or rsync (one event
	// for the whole copy, whose bytes include the tool's own framing).
	Tool string `json:"tool,omitempty"`
}

// ForwardData is a forwarded connection: Kind local (ssh -L, direct-tcpip) or remote (ssh -R,
// forwarded-tcpip). Closed is set on the event recorded when it ends, with the byte counts.
type ForwardData struct {
	Channel         uint32 `json:"channel"`
	Kind            string `json:"kind"`
	Destination     string `json:"destination"` // host:port
	Origin          string `json:"origin,omitempty"`
	Closed          bool   `json:"closed,omitempty"`
	BytesFromClient int64  `json:"bytes_from_client,omitempty"`
	BytesToClient   int64  `json:"bytes_to_client,omitempty"`
	Error           string `json:"error,omitempty"`
	// Request is the id of the Kubernetes request (port-forward) that carries the connection.
	Request uint64 `json:"request,omitempty"`
	// SHA256FromClient and SHA256ToClient are the SHA-256 (hex) of all the bytes that crossed
	// each way, on the closing event of a connection whose content is recorded
	// (forward.data); Truncated says that some of it was not kept (past the limit).
	SHA256FromClient string `json:"sha256_from_client,omitempty"`
	SHA256ToClient   string `json:"sha256_to_client,omitempty"`
	Truncated        bool   `json:"truncated,omitempty"`
}

// ForwardBytesData describes Raw of a forward.data event.
type ForwardBytesData struct {
	Channel uint32 `json:"channel"` // the forward's channel (its forward events name it)
	From    string `json:"from"`    // client | target
	Bytes   int    `json:"bytes"`   // how many crossed (Raw may hold fewer: Truncated)
	// Truncated marks bytes past the connection's limit: Raw holds only those before it.
	Truncated bool `json:"truncated,omitempty"`
}

// DeniedData is a request refused by policy.
type DeniedData struct {
	Channel uint32 `json:"channel,omitempty"`
	Request string `json:"request"` // shell, exec, sftp, direct-tcpip, tcpip-forward, auth-agent, x11, env
	Detail  string `json:"detail,omitempty"`
	Reason  string `json:"reason"`
	Rule    string `json:"rule,omitempty"`
}

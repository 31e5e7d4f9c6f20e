package event

import (
	"encoding/binary"
	"strings"
)

// Payloads of the event types, stored as JSON in Event.Data. Field names are part of the stored
// format and of the API: add fields, never rename or repurpose one.

// SessionStartData opens every recording.
type SessionStartData struct {
	User            string            `json:"user"`
	Groups          []string          `json:"groups,omitempty"`
	Role            string            `json:"role"`
	AuthMethod      string            `json:"auth_method"` // password | token | api_key
	Target          string            `json:"target"`
	TargetType      string            `json:"target_type"`
	Database        string            `json:"database,omitempty"`
	ClientAddr      string            `json:"client_addr"`
	ApplicationName string            `json:"application_name,omitempty"`
	TLS             bool              `json:"tls"`
	TLSVersion      string            `json:"tls_version,omitempty"`
	Params          map[string]string `json:"params,omitempty"` // client startup parameters, minus secrets
	Upstream        string            `json:"upstream,omitempty"`
	UpstreamTLS     bool              `json:"upstream_tls"`
	Policy          string            `json:"policy,omitempty"` // the rule that allowed the session
	// Agent is the agent whose tunnel carried the session ("" for a target the gateway dials).
	// For a kubernetes session, whose HTTP connections may each go through another agent, it
	// is the target's agent setting (a name or a glob; "*" for a target an agent announced).
	Agent string `json:"agent,omitempty"`
}

// ViaAgent marks a session whose target an agent reaches: Agent names it, and Upstream says
// "agent:NAME" where the address would be (the gateway does not know it). "" changes nothing.
func (d *SessionStartData) ViaAgent(agent string) {
	if agent != "" {
		d.Agent, d.Upstream = agent, "agent:"+agent
	}
}

// SessionEndData closes every recording.
type SessionEndData struct {
	Reason          string `json:"reason"` // client_terminated | client_disconnected | upstream_closed | agent_lost (the agent carrying it went away) | gateway_shutdown | error | interrupted (closed by crash recovery)
	Error           string `json:"error,omitempty"`
	DurationNS      int64  `json:"duration_ns"`
	BytesFromClient int64  `json:"bytes_from_client"`
	BytesToClient   int64  `json:"bytes_to_client"`
	Statements      int64  `json:"statements"`
	// DroppedEvents counts the events a best-effort recording could not keep (each run of them
	// is a recording.gap event). Always 0 for strict recordings.
	DroppedEvents uint64 `json:"dropped_events,omitempty"`
}

// GapData describes one run of events a best-effort recording dropped. The dropped events never
// got a sequence number (they were never sealed into the chain), so the run is located by the
// offsets of its first and last event, and by the gap's own place in the chain.
type GapData struct {
	Events        uint64 `json:"events"`                // events dropped
	Bytes         uint64 `json:"bytes"`                 // their data and raw bytes
	FirstOffsetNS int64  `json:"first_offset_ns"`       // offset of the first dropped event
	LastOffsetNS  int64  `json:"last_offset_ns"`        // offset of the last dropped event
	Reason        string `json:"reason"`                // buffer_full
	StoreError    string `json:"store_error,omitempty"` // the store's last error, if it failed
}

// QueryData is a statement as the target received it. For the extended protocol it is emitted at
// Execute, with the text of the prepared statement and the parameters bound to the portal.
type QueryData struct {
	Text      string  `json:"text"`
	Protocol  string  `json:"protocol"`            // simple | extended
	Statement string  `json:"statement,omitempty"` // prepared statement name, "" for unnamed
	Portal    string  `json:"portal,omitempty"`
	Params    []Value `json:"params,omitempty"`
}

// Value is a parameter or column value: Text when the value is text (or decodes to it), Hex when
// it is binary, neither when NULL.
type Value struct {
	Null bool    `json:"null,omitempty"`
	Text *string `json:"text,omitempty"`
	Hex  string  `json:"hex,omitempty"`
	OID  uint32  `json:"oid,omitempty"`
}

// SQL renders v as a SQL literal: 'text' (quotes doubled), '\xHEX', or NULL.
func (v Value) SQL() string {
	switch {
	case v.Null:
		return "NULL"
	case v.Text != nil:
		return "'" + strings.ReplaceAll(*v.Text, "'", "''") + "'"
	case v.Hex != "":
		return `'\x` + v.Hex + `'`
	}
	return "NULL"
}

// Column describes one column of a result.
type Column struct {
	Name   string `json:"name"`
	OID    uint32 `json:"oid"`
	Format int16  `json:"format"` // 0 text, 1 binary
	// Ruled is set by an engine when a masking column rule covers the column's values: they
	// are masked whole. Never recorded.
	Ruled bool `json:"-"`
}

// ColumnsData precedes the rows of a result.
type ColumnsData struct {
	Columns []Column `json:"columns"`
}

// RowsData describes Raw of a Rows event: Count rows packed with AppendRow.
type RowsData struct {
	Count int `json:"count"`
}

// ResultData ends one statement.
type ResultData struct {
	Tag        string `json:"tag"`
	Rows       int64  `json:"rows"`
	DurationNS int64  `json:"duration_ns"`
	Suspended  bool   `json:"suspended,omitempty"` // portal suspended: more rows may follow
}

// MessageData is an error or notice as the client saw it.
type MessageData struct {
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	Detail   string `json:"detail,omitempty"`
	Hint     string `json:"hint,omitempty"`
	Source   string `json:"source"` // target | gateway
}

// NotificationData is an asynchronous LISTEN/NOTIFY message.
type NotificationData struct {
	PID     uint32 `json:"pid"`
	Channel string `json:"channel"`
	Payload string `json:"payload"`
}

// CopyData describes Raw of a copy.in / copy.out event.
type CopyData struct {
	Bytes int    `json:"bytes"`
	Done  bool   `json:"done,omitempty"`
	Fail  string `json:"fail,omitempty"`
}

// CancelData records a cancel request routed to the session's upstream.
type CancelData struct {
	Delivered bool   `json:"delivered"`
	Error     string `json:"error,omitempty"`
}

// CheckpointData is the gateway's Ed25519 signature over the chain head: Seq and Head are the
// sequence number and hash of the event just before the checkpoint. Signature is
// base64 (standard, padded) of the signature over CheckpointMessage. Final marks the checkpoint
// recorded after session.end: a recording whose last event is not a valid final checkpoint was
// truncated (or is still being written).
type CheckpointData struct {
	Seq       uint64 `json:"seq"`
	Head      string `json:"head"` // hex
	KeyID     string `json:"key_id"`
	Signature string `json:"signature"`
	Final     bool   `json:"final,omitempty"`
}

// AuditData is one entry of the audit log: who did what to which subject, from where, and how
// it went. Detail never carries a secret (a password, a token).
type AuditData struct {
	Action  string            `json:"action"`            // login, target.put, recording.read, recording.modify, gateway.start, gateway.stop
	Actor   string            `json:"actor"`             // the user (for a failed login: the name given)
	Outcome string            `json:"outcome"`           // ok | denied | failed
	Subject string            `json:"subject,omitempty"` // session id, target name, ...
	Client  string            `json:"client,omitempty"`  // client address
	Detail  map[string]string `json:"detail,omitempty"`
}

// CheckpointDomain starts every signed checkpoint message. Its version changes whenever the
// message layout does.
const CheckpointDomain = "airlock-checkpoint-v1\x00"

// CheckpointMessage returns the bytes a checkpoint signs, fixed for v1:
//
//	"airlock-checkpoint-v1" 0x00 | u16 len + session id | u64 seq | 32-byte head | u8 final (0 or 1)
//
// Integers are big-endian. The session id binds the signature to one recording, seq and head to
// one point of its chain, and final to whether the chain may continue after it.
func CheckpointMessage(session string, seq uint64, head [32]byte, final bool) []byte {
	b := make([]byte, 0, len(CheckpointDomain)+2+len(session)+8+32+1)
	b = append(b, CheckpointDomain...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(session)))
	b = append(b, session...)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = append(b, head[:]...)
	if final {
		return append(b, 1)
	}
	return append(b, 0)
}

// MaskData counts, per detector ("column" for column rules), the values masked since the
// previous mask event. The masked values are what the client saw and what the rows events hold;
// the originals of masked rows are kept only encrypted, in rows.original events.
type MaskData struct {
	Hits map[string]int `json:"hits"`
}

// RowsOriginalData describes Raw of a rows.original event: the Count original rows of the rows
// event it follows (the latest rows event before it; only checkpoints may come between),
// encrypted with the recording key KeyID and Nonce (base64, standard, padded).
type RowsOriginalData struct {
	KeyID string `json:"key_id"`
	Nonce string `json:"nonce"`
	Count int    `json:"count"`
}

// OriginalData describes Raw of an original event: the unmasked content of the Of event it
// follows, encrypted with the recording key KeyID and Nonce (base64, standard, padded).
type OriginalData struct {
	Of    Type   `json:"of"`
	KeyID string `json:"key_id"`
	Nonce string `json:"nonce"`
}

// GuardrailData is a guardrail decision on a statement.
type GuardrailData struct {
	Action    string   `json:"action"` // deny | approve | warn | allow
	Rule      string   `json:"rule,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	Classes   []string `json:"classes,omitempty"`
	Statement string   `json:"statement"`
	Approved  *bool    `json:"approved,omitempty"` // for approve: the approver's answer
	By        string   `json:"by,omitempty"`       // who approved or denied
}

package event

// Event types of Kubernetes sessions (issue 9). Like every type name, these are part of the
// stored format and of the API: never rename one.
const (
	// KubeRequest is one Kubernetes API request as the gateway received it: Data:
	// KubeRequestData; Raw: the body, masked (Secret values), at most the listener's
	// body_limit bytes. Recorded (and durable) before the request is forwarded, and also
	// for requests the gateway refused.
	KubeRequest Type = "kube.request"
	// KubeResponse is the target's answer to a request: Data: KubeResponseData; Raw: the
	// body, masked and capped like the request's. For a watch or a body longer than the
	// buffer, it carries the status and what was read so far, and kube.response.end follows.
	KubeResponse Type = "kube.response"
	// KubeResponseEnd closes a streamed response (a watch, a large body, logs -f): Data:
	// KubeResponseEndData.
	KubeResponseEnd Type = "kube.response.end"
	// KubeWatchEvent is one event of a watch stream as the client received it: Data:
	// KubeWatchData; Raw: the object (JSON), masked.
	KubeWatchEvent Type = "kube.watch"
)

// KubeRequestData describes one API request. Headers that carry credentials (Authorization,
// cookies, Impersonate-*) are never part of it.
type KubeRequestData struct {
	ID          uint64   `json:"id"` // the request's number within the session; responses name it
	Method      string   `json:"method"`
	Path        string   `json:"path"` // the API path, without the gateway's /k8s/TARGET prefix
	Query       string   `json:"query,omitempty"`
	Verb        string   `json:"verb"` // get, list, watch, create, update, patch, delete, deletecollection
	APIGroup    string   `json:"api_group,omitempty"`
	APIVersion  string   `json:"api_version,omitempty"`
	Resource    string   `json:"resource,omitempty"`
	Subresource string   `json:"subresource,omitempty"`
	Namespace   string   `json:"namespace,omitempty"`
	Name        string   `json:"name,omitempty"`
	UserAgent   string   `json:"user_agent,omitempty"`
	ContentType string   `json:"content_type,omitempty"`
	Body        BodyInfo `json:"body"`
	// Denied is set when the gateway refused the request: Rule names the policy rule.
	Denied bool   `json:"denied,omitempty"`
	Rule   string `json:"rule,omitempty"`
	// Warning is set when a warn rule matched: the client got it as a Warning header.
	Warning string `json:"warning,omitempty"`
}

// BodyInfo describes a body whose first bytes are an event's Raw.
type BodyInfo struct {
	Bytes     int64  `json:"bytes"`            // length of the whole body, as forwarded
	SHA256    string `json:"sha256,omitempty"` // of the whole body as forwarded (hex); "" until known
	Truncated bool   `json:"truncated,omitempty"`
	// Masked counts the values masked in Raw (Secret data); the client got them unmasked.
	Masked int `json:"masked,omitempty"`
	// Withheld marks a body not kept at all (a Secret body too long to mask).
	Withheld bool `json:"withheld,omitempty"`
}

// KubeResponseData is the status and body of a response.
type KubeResponseData struct {
	ID          uint64   `json:"id"`
	Status      int      `json:"status"`
	DurationNS  int64    `json:"duration_ns"` // from the request to the response's header (and whole body unless Streamed)
	ContentType string   `json:"content_type,omitempty"`
	Body        BodyInfo `json:"body"`
	// Streamed marks a response whose body goes on after this event (kube.response.end
	// closes it).
	Streamed bool `json:"streamed,omitempty"`
	// Source is target, or gateway for answers the gateway made itself (a denial, an
	// unreachable target).
	Source string `json:"source"`
	// Message is the Status message of an error the gateway made.
	Message string `json:"message,omitempty"`
}

// KubeResponseEndData closes a streamed response.
type KubeResponseEndData struct {
	ID         uint64   `json:"id"`
	DurationNS int64    `json:"duration_ns"`
	Body       BodyInfo `json:"body"`
	Events     int      `json:"events,omitempty"` // watch events relayed
	Error      string   `json:"error,omitempty"`
}

// KubeWatchData is one watch event.
type KubeWatchData struct {
	ID              uint64 `json:"id"`   // the watch request's id
	Type            string `json:"type"` // ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
	Kind            string `json:"kind,omitempty"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name,omitempty"`
	ResourceVersion string `json:"resource_version,omitempty"`
	Bytes           int    `json:"bytes"`
	Masked          int    `json:"masked,omitempty"`
	Truncated       bool   `json:"truncated,omitempty"`
}

// KubeStream is one message of an exec, attach or port-forward stream over WebSocket (the
// channel.k8s.io protocols): Data: KubeStreamData; Raw: the message without its channel byte
// (cut at the body limit). Recorded before the message's last byte is forwarded.
const KubeStream Type = "kube.stream"

// KubeStreamData describes one stream message.
type KubeStreamData struct {
	ID        uint64 `json:"id"`      // the upgraded request's id
	From      string `json:"from"`    // client | target
	Channel   string `json:"channel"` // stdin, stdout, stderr, error, resize, close
	Bytes     int    `json:"bytes"`
	Cols      uint16 `json:"cols,omitempty"` // resize
	Rows      uint16 `json:"rows,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

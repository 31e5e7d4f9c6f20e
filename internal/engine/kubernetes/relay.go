package kubernetes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/engine/guardrail"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
	"github.com/airlock-gw/airlock/internal/policy"
)

// maxRequestBody bounds a request body the gateway reads to record it before forwarding.
const maxRequestBody = 64 << 20

// hopHeaders are not forwarded (RFC 9110 7.6.1), besides those named in Connection.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding"}

// serve relays one request of the session and records it.
func (s *session) serve(c *clientConn, w http.ResponseWriter, r *http.Request, apiPath string) {
	e := s.eng
	// A request lasts no longer than its session (max_duration, shutdown): a watch is cut.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stop := context.AfterFunc(s.ctx, func() { cancel(context.Cause(s.ctx)) })
	defer stop()
	r = r.WithContext(ctx)
	began := time.Now()
	id := s.nextID.Add(1)
	s.requests.Add(1)
	ri := parseRequest(r.Method, apiPath, r.URL.Query())
	rd := event.KubeRequestData{ID: id, Method: r.Method, Path: apiPath, Query: r.URL.RawQuery, Verb: ri.Verb,
		APIGroup: ri.Group, APIVersion: ri.Version, Resource: ri.Resource, Subresource: ri.Subresource,
		Namespace: ri.Namespace, Name: ri.Name, UserAgent: r.UserAgent(), ContentType: r.Header.Get("Content-Type")}
	// Bodies to and from a credential resource (secrets, a service account's token, token
	// reviews) are masked whole: a patch has no kind.
	secret := masking.KubeCredentialResource(ri.Group, ri.Resource, ri.Subresource)
	upgrade := isUpgrade(r.Header)
	if upgrade && !streamed(ri, r.Header.Get("Upgrade")) {
		// Fail closed: what such a stream carries (a watch's Secrets) would pass unrecorded.
		rd.Denied = true
		s.record(event.KubeRequest, rd, nil)
		e.d.Metrics.Error("upgrade_refused")
		s.log.Info("upgrade refused", "verb", ri.Verb, "resource", ri.Resource, "subresource", ri.Subresource, "namespace", ri.Namespace, "name", ri.Name, "upgrade", r.Header.Get("Upgrade"))
		s.respondGateway(w, id, began, http.StatusForbidden, "Forbidden", "airlock: "+describe(ri)+": "+upgradeRefused)
		return
	}

	// The request body is read whole (up to a bound) so that it is recorded before the API
	// server sees it.
	var body []byte
	if r.Body != nil && r.Body != http.NoBody && !upgrade {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
		if err != nil {
			return // the client went away
		}
		if len(b) > maxRequestBody {
			s.record(event.KubeRequest, rd, nil)
			s.respondGateway(w, id, began, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", fmt.Sprintf("request bodies through the gateway are limited to %d bytes", maxRequestBody))
			return
		}
		body = b
		s.fromCli.Add(int64(len(b)))
	}
	var raw []byte
	rd.Body, raw = e.bodyRecord(body, secret, r.Header.Get("Content-Type"))

	if rule := policy.MatchKube(s.dec.Settings.Kubernetes, ri.KubeRequest); rule != nil {
		switch rule.Action {
		case "deny":
			rd.Denied, rd.Rule = true, rule.Name
			s.record(event.KubeRequest, rd, raw)
			e.d.Metrics.Error("policy_denied")
			s.log.Info("request denied", "verb", ri.Verb, "resource", ri.Resource, "subresource", ri.Subresource, "namespace", ri.Namespace, "name", ri.Name, "rule", rule.Name)
			s.respondGateway(w, id, began, http.StatusForbidden, "Forbidden",
				fmt.Sprintf("airlock: %s denied by policy rule %q", describe(ri), rule.Name))
			return
		case "approve":
			// The request waits (kubectl with it) until an approver answers or the approval
			// times out; the wait and the answer are recorded as guardrail events.
			rd.Rule = rule.Name
			d := guardrail.Decider{Approvals: e.d.Approvals, Rec: s.rec, User: s.id.User, Target: s.t.Name}
			if v := d.Hold(r.Context(), describe(ri), rule.Name, "policy rule "+rule.Name+" requires approval"); !v.Allow {
				rd.Denied = true
				s.record(event.KubeRequest, rd, raw)
				s.log.Info("request not approved", "verb", ri.Verb, "resource", ri.Resource, "namespace", ri.Namespace, "name", ri.Name, "rule", rule.Name)
				s.respondGateway(w, id, began, http.StatusForbidden, "Forbidden", "airlock: "+describe(ri)+": "+v.Msg)
				return
			}
		case "warn":
			rd.Rule = rule.Name
			rd.Warning = fmt.Sprintf("airlock: %s matches policy rule %q; it is recorded", describe(ri), rule.Name)
			w.Header().Add("Warning", `299 - "`+strings.ReplaceAll(rd.Warning, `"`, `'`)+`"`)
		case "allow":
			rd.Rule = rule.Name
		}
	}
	s.record(event.KubeRequest, rd, raw)
	if err := s.commit(); err != nil {
		s.respondGateway(w, id, began, http.StatusServiceUnavailable, "ServiceUnavailable", "the recording failed, so the gateway does not forward the request: "+err.Error())
		return
	}

	out, err := s.outgoing(r, apiPath, body)
	if err != nil {
		s.respondGateway(w, id, began, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	if upgrade {
		s.serveUpgrade(c, w, r, out, id, began, ri)
		return
	}
	resp, err := s.up.rt.RoundTrip(out)
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		if lost := s.agentLost(err); lost != nil {
			s.respondGateway(w, id, began, http.StatusServiceUnavailable, "ServiceUnavailable", s.lostMessage(lost))
			return
		}
		e.d.Metrics.Error("dial")
		s.respondGateway(w, id, began, http.StatusBadGateway, "ServiceUnavailable", fmt.Sprintf("the gateway could not reach target %s: %v", s.t.Name, err))
		return
	}
	defer resp.Body.Close()
	if ri.Verb == "watch" && resp.StatusCode == http.StatusOK {
		s.relayWatch(w, resp, id, began, secret)
		return
	}
	// A followed log is streamed as it comes; so is any log when the policy masks (the masking
	// of terminal output, across reads).
	if ri.Resource == "pods" && ri.Subresource == "log" && (isTrue(r.URL.Query().Get("follow")) || s.masker != nil) && resp.StatusCode == http.StatusOK {
		s.relayFollow(w, resp, id, began)
		return
	}
	s.relayResponse(w, resp, id, began, secret)
}

// describe names a request for people: "delete namespaces/foo", "create pods/exec in kube-system".
func describe(ri requestInfo) string {
	var b strings.Builder
	b.WriteString(ri.Verb)
	b.WriteByte(' ')
	b.WriteString(ri.Resource)
	if ri.Group != "" {
		b.WriteString("." + ri.Group)
	}
	if ri.Name != "" {
		b.WriteString("/" + ri.Name)
	}
	if ri.Subresource != "" {
		b.WriteString("/" + ri.Subresource)
	}
	if ri.Namespace != "" && ri.Resource != "namespaces" {
		b.WriteString(" in namespace " + ri.Namespace)
	}
	return b.String()
}

// outgoing builds the request to the API server: the target's URL, the gateway's credential,
// the user's identity when the target impersonates, and none of the client's credentials.
func (s *session) outgoing(r *http.Request, apiPath string, body []byte) (*http.Request, error) {
	u := *s.up.base
	u.Path = strings.TrimRight(u.Path, "/") + apiPath
	u.RawPath = ""
	u.RawQuery = r.URL.RawQuery
	var rb io.Reader = http.NoBody
	if body != nil {
		rb = bytes.NewReader(body)
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), rb)
	if err != nil {
		return nil, fmt.Errorf("bad request path: %w", err)
	}
	if r.Body != nil && isUpgrade(r.Header) {
		out.Body = r.Body
	}
	out.ContentLength = int64(len(body))
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	if isUpgrade(r.Header) {
		out.Header.Set("Connection", "Upgrade")
		out.Header.Set("Upgrade", r.Header.Get("Upgrade"))
	} else {
		out.Header.Del("Upgrade") // hop-by-hop; without Connection: Upgrade it asks for nothing
	}
	for k := range out.Header {
		// The client's own credentials and any identity it claims stay here; only the
		// gateway's credential and the authenticated user go on.
		if strings.HasPrefix(k, "Impersonate-") {
			out.Header.Del(k)
		}
	}
	out.Header.Del("Authorization")
	out.Header.Del("Cookie")
	// Bodies as JSON, uncompressed: the gateway records and masks what it can read.
	out.Header.Del("Accept-Encoding")
	if a := out.Header.Get("Accept"); strings.Contains(a, "protobuf") && !isUpgrade(r.Header) {
		out.Header.Set("Accept", jsonOnly(a))
	}
	if s.token != "" {
		out.Header.Set("Authorization", "Bearer "+s.token)
	}
	if s.t.Impersonate {
		out.Header.Set("Impersonate-User", s.id.User)
		for _, g := range s.id.Groups {
			out.Header.Add("Impersonate-Group", g)
		}
	}
	out.Host = u.Host
	return out, nil
}

// jsonOnly drops protobuf from an Accept header, keeping the JSON alternatives (and their
// parameters, like as=Table), or asks for JSON when none is left.
func jsonOnly(accept string) string {
	var keep []string
	for _, part := range strings.Split(accept, ",") {
		if !strings.Contains(part, "protobuf") {
			keep = append(keep, strings.TrimSpace(part))
		}
	}
	if len(keep) == 0 {
		return "application/json"
	}
	return strings.Join(keep, ", ")
}

func isUpgrade(h http.Header) bool {
	return h.Get("Upgrade") != "" && headerHasToken(h, "Connection", "upgrade")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// bodyRecord describes body and returns what of it a recording keeps: masked (Secret
// values) and cut at the body limit. A body that should be masked but does not parse is not
// kept at all.
func (e *Engine) bodyRecord(body []byte, secretResource bool, contentType string) (event.BodyInfo, []byte) {
	bi := event.BodyInfo{Bytes: int64(len(body))}
	if len(body) == 0 {
		return bi, nil
	}
	sum := sha256.Sum256(body)
	bi.SHA256 = hex.EncodeToString(sum[:])
	kept := body
	if isJSONish(contentType, body) {
		m, n, ok := masking.MaskKubeSecrets(body, secretResource)
		switch {
		case ok:
			kept, bi.Masked = m, n
		case secretResource || bytes.Contains(body, []byte("Secret")):
			bi.Withheld = true
			return bi, nil
		}
	} else if secretResource || bytes.Contains(body, []byte("Secret")) {
		bi.Withheld = true // not JSON (YAML, protobuf): the gateway cannot mask it
		return bi, nil
	}
	if len(kept) > e.bodyLimit {
		kept, bi.Truncated = kept[:e.bodyLimit], true
	}
	if len(kept) == 0 {
		return bi, nil
	}
	return bi, kept
}

func isJSONish(contentType string, body []byte) bool {
	if strings.Contains(contentType, "json") {
		return true
	}
	t := bytes.TrimSpace(body)
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// relayResponse forwards an ordinary response. A body up to maxBuffer is read whole, recorded
// and only then forwarded; a longer one is recorded up to the body limit, then streamed, and
// kube.response.end gives its length and hash.
func (s *session) relayResponse(w http.ResponseWriter, resp *http.Response, id uint64, began time.Time, secret bool) {
	ct := resp.Header.Get("Content-Type")
	buf, err := io.ReadAll(io.LimitReader(resp.Body, maxBuffer+1))
	if err != nil && !errors.Is(err, io.EOF) {
		if lost := s.agentLost(err); lost != nil {
			s.respondGateway(w, id, began, http.StatusServiceUnavailable, "ServiceUnavailable", s.lostMessage(lost))
			return
		}
		s.respondGateway(w, id, began, http.StatusBadGateway, "ServiceUnavailable", "reading the target's answer failed: "+err.Error())
		return
	}
	streamed := len(buf) > maxBuffer
	rd := event.KubeResponseData{ID: id, Status: resp.StatusCode, DurationNS: int64(time.Since(began)), ContentType: ct, Source: "target", Streamed: streamed}
	var raw []byte
	if !streamed {
		rd.Body, raw = s.e().bodyRecord(buf, secret, ct)
	} else {
		rd.Body = event.BodyInfo{Bytes: int64(len(buf)), Truncated: true}
		if !secret && s.e().bodyLimit > 0 {
			raw = buf[:s.e().bodyLimit]
		} else {
			rd.Body.Withheld = true
		}
	}
	s.record(event.KubeResponse, rd, raw)
	if err := s.commit(); err != nil {
		s.respondGateway(w, id, began, http.StatusServiceUnavailable, "ServiceUnavailable", "the recording failed, so the gateway does not forward the answer: "+err.Error())
		return
	}
	copyHeader(w.Header(), resp.Header)
	if !streamed {
		w.Header().Set("Content-Length", fmt.Sprint(len(buf)))
	} else {
		w.Header().Del("Content-Length")
	}
	w.WriteHeader(resp.StatusCode)
	n, _ := w.Write(buf)
	s.toCli.Add(int64(n))
	if !streamed {
		return
	}
	h := sha256.New()
	h.Write(buf)
	total := int64(len(buf))
	m, cerr := io.Copy(io.MultiWriter(w, h), resp.Body)
	total += m
	s.toCli.Add(m)
	end := event.KubeResponseEndData{ID: id, DurationNS: int64(time.Since(began)), Body: event.BodyInfo{Bytes: total, SHA256: hex.EncodeToString(h.Sum(nil)), Truncated: true, Withheld: rd.Body.Withheld}}
	lost := s.agentLost(cerr)
	if cerr != nil {
		end.Error = cerr.Error()
	}
	if lost != nil {
		end.Error = lostEnd(lost)
	}
	s.record(event.KubeResponseEnd, end, nil)
	s.commit()
	s.cutLost(nil, lost)
}

func (s *session) e() *Engine { return s.eng }

// startStream records the head of a streamed response (a watch, a followed log) and, once that
// is durable, sends the client the status and headers; ok is false when the recording failed
// (the client then got the gateway's 503).
func (s *session) startStream(w http.ResponseWriter, resp *http.Response, id uint64, began time.Time) (rc *http.ResponseController, ok bool) {
	s.record(event.KubeResponse, event.KubeResponseData{ID: id, Status: resp.StatusCode, DurationNS: int64(time.Since(began)),
		ContentType: resp.Header.Get("Content-Type"), Source: "target", Streamed: true}, nil)
	if err := s.commit(); err != nil {
		s.respondGateway(w, id, began, http.StatusServiceUnavailable, "ServiceUnavailable", "the recording failed: "+err.Error())
		return nil, false
	}
	copyHeader(w.Header(), resp.Header)
	w.Header().Del("Content-Length")
	w.WriteHeader(resp.StatusCode)
	rc = http.NewResponseController(w)
	rc.Flush()
	return rc, true
}

// relayWatch forwards a watch stream event by event: each is recorded (masked) before the
// client gets it.
func (s *session) relayWatch(w http.ResponseWriter, resp *http.Response, id uint64, began time.Time, secret bool) {
	if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, "json") {
		// Not a JSON stream (the gateway asked for JSON; CBOR or protobuf if the client asked
		// for nothing else): the gateway cannot record its events, so it does not forward it.
		s.respondGateway(w, id, began, http.StatusNotAcceptable, "NotAcceptable",
			"airlock records watches as JSON events; the target answered "+ct+": ask for application/json")
		return
	}
	rc, ok := s.startStream(w, resp, id, began)
	if !ok {
		return
	}
	h := sha256.New()
	var total int64
	events := 0
	end := event.KubeResponseEndData{ID: id}
	var lost *connector.LostError
	dec := json.NewDecoder(resp.Body)
	for {
		var ev json.RawMessage
		if err := dec.Decode(&ev); err != nil {
			if !errors.Is(err, io.EOF) && s.ctx.Err() == nil {
				end.Error = err.Error()
			}
			if lost = s.agentLost(err); lost != nil {
				end.Error = lostEnd(lost)
			}
			break
		}
		wd, raw := s.watchRecord(id, ev, secret)
		s.record(event.KubeWatchEvent, wd, raw)
		if err := s.commit(); err != nil {
			end.Error = "recording failed: " + err.Error()
			break
		}
		line := append(ev, '\n')
		h.Write(line)
		total += int64(len(line))
		if _, err := w.Write(line); err != nil {
			break
		}
		rc.Flush()
		events++
	}
	s.toCli.Add(total)
	end.DurationNS = int64(time.Since(began))
	end.Events = events
	end.Body = event.BodyInfo{Bytes: total, SHA256: hex.EncodeToString(h.Sum(nil))}
	s.record(event.KubeResponseEnd, end, nil)
	s.commit()
	s.cutLost(nil, lost)
}

// relayFollow forwards a followed log (`kubectl logs -f`) as it comes: each piece the API
// server sends is recorded as terminal output (on the channel numbered by the request's id, so
// that the log replays and exports like a terminal) before the client gets it, masked when the
// policy says so (mask.go).
func (s *session) relayFollow(w http.ResponseWriter, resp *http.Response, id uint64, began time.Time) {
	rc, ok := s.startStream(w, resp, id, began)
	if !ok {
		return
	}
	h := sha256.New()
	var total int64
	end := event.KubeResponseEndData{ID: id}
	var lost *connector.LostError
	emit := func(chunk []byte, hits []masking.Hit) error {
		s.record(event.TerminalOutput, terminalOutput(uint32(id), "", chunk, hits), chunk)
		if err := s.commit(); err != nil {
			return fmt.Errorf("recording failed: %w", err)
		}
		h.Write(chunk)
		total += int64(len(chunk))
		if _, err := w.Write(chunk); err != nil {
			return errClientGone
		}
		rc.Flush()
		return nil
	}
	write := func(p []byte) error { return emit(p, nil) }
	var mo *maskedOutput
	if s.masker != nil {
		mo = newMaskedOutput(s.masker, masking.HoldFor(false), emit)
		write = mo.write
	}
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if err := write(buf[:n]); err != nil {
				if !errors.Is(err, errClientGone) {
					end.Error = err.Error()
				}
				break
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) && s.ctx.Err() == nil {
				end.Error = rerr.Error()
			}
			if lost = s.agentLost(rerr); lost != nil {
				end.Error = lostEnd(lost)
			}
			break
		}
	}
	if mo != nil {
		if err := mo.end(); err != nil && end.Error == "" && !errors.Is(err, errClientGone) {
			end.Error = err.Error()
		}
	}
	s.toCli.Add(total)
	end.DurationNS = int64(time.Since(began))
	end.Body = event.BodyInfo{Bytes: total, SHA256: hex.EncodeToString(h.Sum(nil))}
	s.record(event.KubeResponseEnd, end, nil)
	s.commit()
	s.cutLost(flushWriter{w, rc}, lost)
}

// watchRecord describes one watch event and returns its object as recorded.
func (s *session) watchRecord(id uint64, ev json.RawMessage, secret bool) (event.KubeWatchData, []byte) {
	var head struct {
		Type   string `json:"type"`
		Object struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Namespace       string `json:"namespace"`
				Name            string `json:"name"`
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		} `json:"object"`
	}
	json.Unmarshal(ev, &head)
	wd := event.KubeWatchData{ID: id, Type: head.Type, Kind: head.Object.Kind, Namespace: head.Object.Metadata.Namespace,
		Name: head.Object.Metadata.Name, ResourceVersion: head.Object.Metadata.ResourceVersion, Bytes: len(ev)}
	raw, n, ok := masking.MaskKubeSecrets(ev, secret)
	if !ok {
		return wd, nil
	}
	wd.Masked = n
	if secret && head.Object.Kind == "" {
		return wd, nil
	}
	if lim := s.e().bodyLimit; len(raw) > lim {
		raw, wd.Truncated = raw[:lim], true
	}
	return wd, raw
}

// flushWriter writes to a streamed response and flushes each write to the client.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	f.rc.Flush()
	return n, err
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		if isHop(k) {
			continue
		}
		for _, v := range vs {
			dst.Add(k, v)
		}
	}
}

func isHop(k string) bool {
	k = textproto.CanonicalMIMEHeaderKey(k)
	for _, h := range hopHeaders {
		if h == k {
			return true
		}
	}
	return false
}

// respondGateway answers with a Status the gateway made, and records it.
func (s *session) respondGateway(w http.ResponseWriter, id uint64, began time.Time, code int, reason, msg string) {
	body, _ := json.Marshal(status(code, reason, msg))
	s.record(event.KubeResponse, event.KubeResponseData{ID: id, Status: code, DurationNS: int64(time.Since(began)),
		ContentType: "application/json", Source: "gateway", Message: msg,
		Body: event.BodyInfo{Bytes: int64(len(body))}}, body)
	s.commit() // the answer is the gateway's own: it goes out even if the recording failed
	writeStatus(w, code, reason, msg)
}

func (s *session) record(t event.Type, data any, raw []byte) {
	s.rec.Record(t, data, raw)
}

// commit makes the session's events durable; once it fails, the session is over.
func (s *session) commit() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	if err := s.rec.Commit(); err != nil {
		err = fmt.Errorf("recording: %w", err)
		s.failed.CompareAndSwap(nil, &err)
		s.log.Error("recording failed: session ends", "err", err)
		return err
	}
	return nil
}

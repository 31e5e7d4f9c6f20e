package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
)

// SSHSigner is the gateway's SSH user CA (internal/engine/ssh.UserCA): it certifies a user's
// public key for a short time, and the SSH listener accepts the certificate as that user.
type SSHSigner interface {
	Sign(id *auth.Identity, pub ssh.PublicKey, ttl time.Duration) (*ssh.Certificate, error)
	PublicKey() ssh.PublicKey
}

// ActionSSHCertificate is the audit action of an issued SSH certificate.
const ActionSSHCertificate = "ssh.certificate"

// DefaultSSHCertTTL is a certificate's lifetime when the request names none; it never
// outlives the credential that asked for it (the CA cuts it to the token's expiry).
const DefaultSSHCertTTL = 8 * time.Hour

type sshCertRequest struct {
	PublicKey string `json:"public_key"`    // authorized_keys form: "ssh-ed25519 AAAA... comment"
	TTL       string `json:"ttl,omitempty"` // Go duration ("1h"); at most 24h
}

type sshCertResponse struct {
	Certificate string    `json:"certificate"` // authorized_keys form, for FILE-cert.pub
	KeyID       string    `json:"key_id"`
	Serial      string    `json:"serial"` // decimal (a uint64)
	Principals  []string  `json:"principals"`
	ValidAfter  time.Time `json:"valid_after"`
	ValidBefore time.Time `json:"valid_before"`
	CAPublicKey string    `json:"ca_public_key"`
}

// sshCertificate issues a short-lived SSH user certificate for the caller's public key: its
// principal is the caller's airlock user name, and the SSH listener accepts it as that user
// while it is valid and the user's tokens are not revoked.
func (s *Server) sshCertificate(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	var req sshCertRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.PublicKey) == "" {
		return errorf(http.StatusBadRequest, "bad_request", "public_key is required (the contents of ~/.ssh/id_ed25519.pub, say)")
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "public_key is not an OpenSSH public key: %v", err)
	}
	if _, isCert := pub.(*ssh.Certificate); isCert {
		return errorf(http.StatusBadRequest, "bad_request", "public_key is a certificate; send the public key itself")
	}
	ttl := DefaultSSHCertTTL
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 || ttl > 24*time.Hour {
			return errorf(http.StatusBadRequest, "bad_request", "ttl %q: want a duration from 1m to 24h", req.TTL)
		}
	}
	if s.SSHCA == nil {
		return errorf(http.StatusNotImplemented, "not_configured", "the gateway has no SSH listener (listen.ssh), so it issues no SSH certificates")
	}
	cert, err := s.SSHCA.Sign(id, pub, ttl)
	if err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "cannot issue a certificate: %v", err)
	}
	res := sshCertResponse{
		Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		KeyID:       cert.KeyId, Serial: strconv.FormatUint(cert.Serial, 10), Principals: cert.ValidPrincipals,
		ValidAfter:  time.Unix(int64(cert.ValidAfter), 0).UTC(),
		ValidBefore: time.Unix(int64(cert.ValidBefore), 0).UTC(),
		CAPublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.SSHCA.PublicKey()))),
	}
	if err := s.audit(r, audit.Entry{Action: ActionSSHCertificate, Actor: id.User, Outcome: audit.OK, Subject: id.User,
		Detail: map[string]string{"key_fingerprint": ssh.FingerprintSHA256(pub), "serial": res.Serial,
			"valid_before": res.ValidBefore.Format(time.RFC3339)}}); err != nil {
		return err
	}
	s.log().Info("ssh certificate issued", "user", id.User, "serial", res.Serial, "valid_before", res.ValidBefore)
	return writeJSON(w, http.StatusOK, res)
}

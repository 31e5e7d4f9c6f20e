package ssh

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/auth"
)

// Files in data_dir/ssh/, each an OpenSSH private key, mode 0600.
const (
	hostKeyFile = "ssh_host_ed25519_key"
	userCAFile  = "user_ca_ed25519_key"
)

// loadOrCreateHostKey returns the gateway's SSH host key, generating it on first start.
func loadOrCreateHostKey(dataDir string) (ssh.Signer, bool, error) {
	return loadOrCreateKey(filepath.Join(dataDir, "ssh", hostKeyFile), "airlock host key")
}

func loadOrCreateKey(path, comment string) (ssh.Signer, bool, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, false, fmt.Errorf("ssh key %s: %w", path, err)
		}
		return s, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("ssh key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("ssh key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, false, err
	}
	// Written to a temporary file and linked into place, so that two gateways starting on one
	// data_dir cannot both win: the loser reads the winner's key.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return nil, false, fmt.Errorf("ssh key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.Write(pem.EncodeToMemory(blk))
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Link(tmp.Name(), path)
		}
		if errors.Is(err, fs.ErrExist) {
			return loadOrCreateKey(path, comment)
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("ssh key %s: %w", path, err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	return s, true, err
}

// UserCA is the gateway's SSH user certificate authority: it signs short-lived certificates
// for authenticated users, which the SSH listener accepts in place of a registered key.
type UserCA struct {
	signer ssh.Signer
	Now    func() time.Time
}

// Extensions of the certificates the CA issues, carrying the identity they were issued to.
const (
	extRole    = "airlock-role@airlock"
	extGroups  = "airlock-groups@airlock"
	extScope   = "airlock-scope@airlock"   // a service account's target scope
	extService = "airlock-service@airlock" // set for a service account
	extIssued  = "airlock-issued@airlock"  // when it was issued, Unix microseconds (revocation)
	extVia     = "airlock-via@airlock"     // how the user logged in to get it (password, oidc, api_key)
)

func loadOrCreateUserCA(dataDir string) (*UserCA, error) {
	s, _, err := loadOrCreateKey(filepath.Join(dataDir, "ssh", userCAFile), "airlock user CA")
	if err != nil {
		return nil, err
	}
	return &UserCA{signer: s}, nil
}

// OpenUserCA opens (or creates) the user CA in data_dir/ssh/, for the API's signing route.
func OpenUserCA(dataDir string) (*UserCA, error) { return loadOrCreateUserCA(dataDir) }

// PublicKey is the CA's key, as targets or clients would trust it.
func (ca *UserCA) PublicKey() ssh.PublicKey { return ca.signer.PublicKey() }

func (ca *UserCA) now() time.Time {
	if ca.Now != nil {
		return ca.Now()
	}
	return time.Now()
}

// MaxCertTTL bounds a certificate's lifetime.
const MaxCertTTL = 24 * time.Hour

// Sign issues a user certificate for pub to id, valid for ttl (at most MaxCertTTL; it starts a
// minute early to absorb clock skew).
func (ca *UserCA) Sign(id *auth.Identity, pub ssh.PublicKey, ttl time.Duration) (*ssh.Certificate, error) {
	if _, isCert := pub.(*ssh.Certificate); isCert {
		return nil, errors.New("a certificate cannot be certified; send a public key")
	}
	if ttl <= 0 || ttl > MaxCertTTL {
		ttl = min(max(ttl, time.Minute), MaxCertTTL)
	}
	if !id.ExpiresAt.IsZero() && id.ExpiresAt.Before(ca.now().Add(ttl)) {
		ttl = id.ExpiresAt.Sub(ca.now()) // never outlive the credential it was issued for
	}
	if ttl <= 0 {
		return nil, errors.New("the credential has expired")
	}
	serial := make([]byte, 8)
	rand.Read(serial)
	var sn uint64
	for _, b := range serial {
		sn = sn<<8 | uint64(b)
	}
	now := ca.now()
	cert := &ssh.Certificate{
		Key: pub, Serial: sn, CertType: ssh.UserCert, KeyId: id.User,
		ValidPrincipals: []string{id.User},
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()),
		ValidBefore:     uint64(now.Add(ttl).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{
			extRole: string(id.Role), extGroups: strings.Join(id.Groups, ","),
			extIssued:    strconv.FormatInt(now.UnixMicro(), 10),
			"permit-pty": "", "permit-port-forwarding": "", "permit-agent-forwarding": "",
		}},
	}
	if id.Scope != nil {
		cert.Extensions[extScope] = strings.Join(id.Scope, ",")
	}
	if via := cmp.Or(id.Via, id.Method); via != "" {
		cert.Extensions[extVia] = via
	}
	if id.Service {
		cert.Extensions[extService] = ""
	}
	if err := cert.SignCert(rand.Reader, ca.signer); err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return cert, nil
}

// RevocationChecker refuses credentials of a user issued before an admin revoked the user's
// tokens (internal/auth.Service.CheckUserRevoked); the engine finds it on its Authenticator.
type RevocationChecker interface {
	CheckUserRevoked(ctx context.Context, user string, issued time.Time) error
}

// SubjectChecker says whether the user a certificate was issued to may still log in: a local
// user still in the configuration, a service account not revoked (the gateway's Authenticator
// implements it). via is how the user logged in to get the certificate.
type SubjectChecker interface {
	CheckCertSubject(ctx context.Context, id *auth.Identity, via string) error
}

// certIdentity accepts a user certificate of the gateway's CA for user: signed by the CA, of
// type user, valid now, naming user as a principal, not issued before the user's tokens were
// revoked, and of a user who may still log in (SubjectChecker).
func (e *Engine) certIdentity(ctx context.Context, user string, cert *ssh.Certificate) (*auth.Identity, error) {
	if e.ca == nil {
		return nil, auth.ErrBadCredentials
	}
	// CheckCert verifies the signature with the key the certificate names, whoever that is;
	// that it is our CA is for us to check (CertChecker only does in Authenticate).
	if cert.SignatureKey == nil || !bytes.Equal(cert.SignatureKey.Marshal(), e.ca.PublicKey().Marshal()) {
		return nil, fmt.Errorf("%w: the certificate is not signed by the gateway's user CA", auth.ErrBadCredentials)
	}
	checker := &ssh.CertChecker{}
	if err := checker.CheckCert(user, cert); err != nil {
		return nil, fmt.Errorf("%w: %v", auth.ErrBadCredentials, err)
	}
	if cert.CertType != ssh.UserCert || !slices.Contains(cert.ValidPrincipals, user) {
		return nil, auth.ErrBadCredentials
	}
	role, err := auth.ParseRole(cert.Extensions[extRole])
	if err != nil {
		return nil, auth.ErrBadCredentials
	}
	issued, err := strconv.ParseInt(cert.Extensions[extIssued], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: the certificate has no issue time", auth.ErrBadCredentials)
	}
	if e.revoked != nil {
		if err := e.revoked.CheckUserRevoked(ctx, user, time.UnixMicro(issued)); err != nil {
			return nil, err
		}
	}
	var groups []string
	if g := cert.Extensions[extGroups]; g != "" {
		groups = strings.Split(g, ",")
	}
	id := &auth.Identity{User: user, Role: role, Groups: groups, Method: "certificate",
		ExpiresAt: time.Unix(int64(cert.ValidBefore), 0), IssuedAt: time.UnixMicro(issued)}
	if sc, ok := cert.Extensions[extScope]; ok {
		id.Scope = []string{}
		if sc != "" {
			id.Scope = strings.Split(sc, ",")
		}
	}
	_, id.Service = cert.Extensions[extService]
	if e.subjects != nil {
		if err := e.subjects.CheckCertSubject(ctx, id, cert.Extensions[extVia]); err != nil {
			return nil, fmt.Errorf("%w: %v", auth.ErrBadCredentials, err)
		}
	}
	return id, nil
}

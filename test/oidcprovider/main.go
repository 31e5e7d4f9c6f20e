// Command oidcprovider runs a certified OpenID Provider (zitadel/oidc's example OP, imported,
// not copied) on loopback for Airlock's end-to-end tests: authorization code with PKCE, refresh
// tokens, device flow, discovery and JWKS, with a login form that tests post to.
//
// What it adds to the example, for the tests: users given on the command line with a groups
// claim, one client for the gateway (code + refresh + device grants, HTTP Basic secret, loopback
// redirects on any port), and a control endpoint (POST /test/users/NAME) that changes a user's
// groups or disables the user, so that the effect at the next refresh can be checked.
//
//	oidcprovider -addr 127.0.0.1:9998 -client-id airlock -client-secret S \
//	  -user 'dora:pw:ops-admins,dba' -user 'ed:pw:dba'
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

type userList []string

func (u *userList) String() string     { return strings.Join(*u, " ") }
func (u *userList) Set(s string) error { *u = append(*u, s); return nil }

// users is the user store, with groups and a disabled flag the tests change.
type users struct {
	mu       sync.Mutex
	byID     map[string]*storage.User
	groups   map[string][]string
	disabled map[string]bool
}

func (u *users) GetUserByID(id string) *storage.User {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.byID[id]
}

func (u *users) GetUserByUsername(name string) *storage.User {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.disabled[name] {
		return nil
	}
	return u.byID[name]
}

func (u *users) ExampleClientID() string { return storage.ServiceUserID }

func (u *users) claims(id string) (string, []string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	usr, ok := u.byID[id]
	if !ok {
		return "", nil, false
	}
	return usr.Username, append([]string{}, u.groups[id]...), !u.disabled[id]
}

// gatewayClient is the gateway's client: the example's native client (PKCE, loopback redirects
// on any port) made confidential, with the device grant, and with profile claims in the ID
// token.
type gatewayClient struct{ op.Client }

func (gatewayClient) AuthMethod() oidc.AuthMethod { return oidc.AuthMethodBasic }
func (gatewayClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeDeviceCode}
}
func (gatewayClient) IDTokenUserinfoClaimsAssertion() bool { return true }

// store is the example's in-memory storage with the gateway client, the groups claim, and
// refusal of refresh for disabled users.
type store struct {
	*storage.Storage
	users                  *users
	clientID, clientSecret string
}

func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil || id != s.clientID {
		return c, err
	}
	return gatewayClient{c}, nil
}

func (s *store) AuthorizeClientIDSecret(ctx context.Context, id, secret string) error {
	if id == s.clientID {
		if secret != s.clientSecret {
			return errors.New("invalid client secret")
		}
		return nil
	}
	return s.Storage.AuthorizeClientIDSecret(ctx, id, secret)
}

func (s *store) addClaims(info *oidc.UserInfo, subject string) error {
	name, groups, enabled := s.users.claims(subject)
	if !enabled {
		return errors.New("user disabled")
	}
	info.PreferredUsername = name
	info.AppendClaims("groups", groups)
	return nil
}

func (s *store) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	return s.addClaims(info, req.GetSubject())
}

func (s *store) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	return s.addClaims(info, info.Subject)
}

func (s *store) TokenRequestByRefreshToken(ctx context.Context, rt string) (op.RefreshTokenRequest, error) {
	req, err := s.Storage.TokenRequestByRefreshToken(ctx, rt)
	if err != nil {
		return nil, err
	}
	if _, _, enabled := s.users.claims(req.GetSubject()); !enabled {
		return nil, oidc.ErrInvalidGrant().WithDescription("user disabled")
	}
	return req, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9998", "listen address (loopback); the issuer is http://ADDR")
	clientID := flag.String("client-id", "airlock", "the gateway's client id")
	clientSecret := flag.String("client-secret", "airlock-secret", "the gateway's client secret")
	var us userList
	flag.Var(&us, "user", "NAME:PASSWORD:GROUP1,GROUP2 (repeatable)")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "oidcprovider:", err)
		os.Exit(1)
	}
	issuer := "http://" + ln.Addr().String()
	u := &users{byID: map[string]*storage.User{}, groups: map[string][]string{}, disabled: map[string]bool{}}
	for _, spec := range us {
		parts := strings.SplitN(spec, ":", 3)
		if len(parts) < 2 {
			fmt.Fprintf(os.Stderr, "oidcprovider: -user %q: want NAME:PASSWORD[:GROUPS]\n", spec)
			os.Exit(2)
		}
		// The user's id is her name, so that the control endpoint and the sub claim agree.
		u.byID[parts[0]] = &storage.User{ID: parts[0], Username: parts[0], Password: parts[1],
			Email: parts[0] + "@example.test", EmailVerified: true, PreferredLanguage: language.English}
		if len(parts) == 3 && parts[2] != "" {
			u.groups[parts[0]] = strings.Split(parts[2], ",")
		}
	}
	storage.RegisterClients(storage.NativeClient(*clientID, "http://127.0.0.1/callback", "http://localhost/callback",
		"http://127.0.0.1/api/v1/auth/oidc/callback"))
	st := &store{Storage: storage.NewStorage(u), users: u, clientID: *clientID, clientSecret: *clientSecret}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	router := exampleop.SetupServer(issuer, st, logger, false)

	mux := http.NewServeMux()
	// POST /test/users/NAME {"groups": [...], "disabled": bool}: what an IdP admin would change.
	mux.HandleFunc("POST /test/users/{name}", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Groups   *[]string `json:"groups"`
			Disabled *bool     `json:"disabled"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		name := r.PathValue("name")
		u.mu.Lock()
		defer u.mu.Unlock()
		if _, ok := u.byID[name]; !ok {
			http.NotFound(w, r)
			return
		}
		if req.Groups != nil {
			u.groups[name] = *req.Groups
		}
		if req.Disabled != nil {
			u.disabled[name] = *req.Disabled
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/", router)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("issuer %s\n", issuer)
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "oidcprovider:", err)
		os.Exit(1)
	}
}

package oidctest

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Browser is a person's web browser at the provider: a cookie jar and
// plain HTTP through the provider's own pages (the device user-code form,
// then oidc-provider's login and consent interactions), no test hook.
type Browser struct {
	http *http.Client
}

// NewBrowser returns a browser with an empty cookie jar.
func NewBrowser() *Browser {
	jar, _ := cookiejar.New(nil) // never fails without options
	return &Browser{http: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// ApproveDevice enters userCode at verificationURI, confirms it, signs in
// as account and consents, as a person does; it returns an error naming
// the page that did not go as expected.
func (b *Browser) ApproveDevice(verificationURI, userCode, account string) error {
	return b.device(verificationURI, userCode, account, false)
}

// DenyDevice enters userCode at verificationURI and aborts at its
// confirmation page: the device's next poll gets access_denied.
func (b *Browser) DenyDevice(verificationURI, userCode string) error {
	return b.device(verificationURI, userCode, "", true)
}

// The provider's pages, in the order a person sees them, are recognised by
// the fields of their form: user_code alone (the code input), confirm
// (the code confirmation), login (sign-in), prompt=consent (consent). The
// last page is the success page, or for an abort the input page again
// with its "interrupted" notice.
func (b *Browser) device(verificationURI, userCode, account string, deny bool) error {
	page, err := b.do(http.MethodGet, verificationURI, nil)
	for step := 0; err == nil && step < 8; step++ {
		if deny && strings.Contains(page.body, "The Sign-in request was interrupted") {
			return nil
		}
		if page.status != http.StatusOK {
			return fmt.Errorf("%s: %d\n%s", page.url, page.status, page.body)
		}
		if strings.Contains(page.body, "<title>Sign-in Success</title>") {
			if deny {
				return fmt.Errorf("device code %s approved, want it denied", userCode)
			}
			return nil
		}
		f, ok := page.form()
		if !ok {
			break
		}
		_, confirm := f.fields["confirm"]
		switch {
		case deny && confirm:
			f.fields.Set("abort", "yes")
			f.fields.Del("confirm")
		case f.fields.Has("user_code") && !confirm:
			f.fields.Set("user_code", userCode)
		case f.fields.Has("login"):
			f.fields.Set("login", account)
			f.fields.Set("password", "any")
		case f.fields.Get("prompt") == "consent", confirm:
		default:
			return fmt.Errorf("unexpected form at %s: %v\n%s", page.url, f.fields, page.body)
		}
		page, err = b.do(http.MethodPost, f.action, f.fields)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("device code %s: stuck at %s:\n%s", userCode, page.url, page.body)
}

// page is an HTML answer and where it came from (after redirects).
type page struct {
	url    *url.URL
	status int
	body   string
}

func (b *Browser) do(method, target string, form url.Values) (page, error) {
	var resp *http.Response
	var err error
	if method == http.MethodPost {
		resp, err = b.http.PostForm(target, form)
	} else {
		resp, err = b.http.Get(target)
	}
	if err != nil {
		return page{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return page{}, fmt.Errorf("%s %s: reading the page: %w", method, target, err)
	}
	return page{url: resp.Request.URL, status: resp.StatusCode, body: string(raw)}, nil
}

var (
	formRe  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	inputRe = regexp.MustCompile(`(?is)<input\b([^>]*)>`)
	attrRe  = regexp.MustCompile(`(?s)([a-zA-Z_:][-\w:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?`)
)

// form is a page's form: where it posts and its inputs' names and values.
type form struct {
	action string
	fields url.Values
}

// form parses the page's first form (each of the provider's pages has
// one): its action resolved against the page's URL, its inputs.
func (p page) form() (form, bool) {
	m := formRe.FindStringSubmatch(p.body)
	if m == nil {
		return form{}, false
	}
	action, err := p.url.Parse(attrs(m[1])["action"])
	if err != nil {
		return form{}, false
	}
	f := form{action: action.String(), fields: url.Values{}}
	for _, in := range inputRe.FindAllStringSubmatch(m[2], -1) {
		a := attrs(in[1])
		if name := a["name"]; name != "" {
			f.fields.Add(name, a["value"])
		}
	}
	return f, true
}

// attrs reads a tag's attributes, their values unescaped.
func attrs(tag string) map[string]string {
	out := map[string]string{}
	for _, m := range attrRe.FindAllStringSubmatch(tag, -1) {
		out[strings.ToLower(m[1])] = html.UnescapeString(m[2] + m[3] + m[4])
	}
	return out
}

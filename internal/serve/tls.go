package serve

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// CertFiles serves the certificate in certFile and keyFile (a mounted
// kubernetes.io/tls Secret), reading them again when they change, so that
// a renewed certificate (cert-manager's, say) is served without a restart.
// The files are checked at most every checkEvery.
func CertFiles(certFile, keyFile string) (*tls.Config, error) {
	r := &certReloader{cert: certFile, key: keyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.get}, nil
}

var checkEvery = 10 * time.Second

type certReloader struct {
	cert, key string

	mu      sync.Mutex // guards the fields below
	current *tls.Certificate
	stamp   string
	checked time.Time
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) > checkEvery {
		r.checked = time.Now()
		if st := r.fileStamp(); st != r.stamp {
			// A half-written pair fails to load: the current one stays
			// until the next check.
			_ = r.loadLocked()
		}
	}
	return r.current, nil
}

func (r *certReloader) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked()
}

func (r *certReloader) loadLocked() error {
	st := r.fileStamp()
	c, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		return fmt.Errorf("serving certificate %s: %w", r.cert, err)
	}
	r.current, r.stamp, r.checked = &c, st, time.Now()
	return nil
}

// fileStamp changes when either file does (a Secret volume swaps a
// symlink, so the target's size and time are read).
func (r *certReloader) fileStamp() string {
	var s string
	for _, f := range []string{r.cert, r.key} {
		if fi, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return s
}

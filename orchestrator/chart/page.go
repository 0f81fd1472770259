package chart

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
)

//go:embed page.css
var pageCSS string

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="canarylab">
<title>{{.Title}}</title>
<style>{{.CSS}}</style>
</head>
<body>
<header><h1>{{.Title}}</h1>{{with .Subtitle}}<p class="subtitle">{{.}}</p>{{end}}</header>
<main>
{{.Body}}
</main>
<footer>Written by canarylab{{with .Generated}} · {{.}}{{end}}. Self-contained: no script and nothing fetched.</footer>
</body>
</html>
`))

// Page is a self-contained HTML document: the stylesheet is inline and
// the charts are inline SVG.
type Page struct {
	Title, Subtitle string
	// Generated says when and from what the page was written.
	Generated string
	Body      template.HTML
}

// Write writes the page.
func (p Page) Write(w io.Writer) error {
	err := pageTmpl.Execute(w, struct {
		Page
		CSS template.CSS
	}{p, template.CSS(pageCSS)}) // #nosec G203 -- our own embedded stylesheet
	if err != nil {
		return fmt.Errorf("write page %q: %w", p.Title, err)
	}
	return nil
}

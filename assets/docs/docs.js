// Renders /openapi.json as a list of operations: method, path, summary, security, parameters
// (with their patterns), request body and responses. Text only (textContent), no HTML from the
// document, no external resource: the Content-Security-Policy allows this origin only.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function schemaName(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.pattern) return `${schema.type || "string"} matching ${schema.pattern}`;
  if (schema.enum) return `one of ${schema.enum.join(", ")}`;
  return schema.type || "object";
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, String(c)))))));
}

function operation(method, path, op) {
  const security = (op.security || []).map((s) => Object.keys(s).join("+")).join(" or ") || "none";
  const params = (op.parameters || []).map((p) =>
    [p.name, p.in, p.required ? "required" : "optional", schemaName(p.schema), p.description || ""]);
  const body = op.requestBody
    ? schemaName(op.requestBody.content["application/json"].schema)
    : "none";
  const responses = Object.entries(op.responses || {}).map(([code, r]) => [code, r.description]);
  const details = el("details", { "data-search": `${method} ${path} ${op.summary || ""}`.toLowerCase() },
    el("summary", {},
      el("span", { class: `method ${method}` }, method),
      el("span", { class: "path" }, path),
      el("span", { class: "summary" }, op.summary || "")),
    el("div", { class: "body" },
      el("p", {}, `Credentials: ${security}. Request body: ${body}.`),
      params.length ? table(["parameter", "in", "", "accepts", "description"], params) : "",
      table(["status", "meaning"], responses)));
  return details;
}

async function render() {
  const main = document.getElementById("operations");
  const response = await fetch("/openapi.json");
  const doc = await response.json();
  main.replaceChildren();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) main.append(operation(method, path, op));
  }
  document.getElementById("filter").addEventListener("input", (event) => {
    const needle = event.target.value.toLowerCase();
    for (const node of main.children) {
      node.hidden = needle !== "" && !node.dataset.search.includes(needle);
    }
  });
}

render().catch(() => {
  document.getElementById("status").textContent = "The document could not be loaded.";
});

// Renders /openapi.json as a list of API operations: method, path, summary, security,
// parameters (with their patterns), the request body's and the success answer's fields (type,
// constraints, required, description) with an example, and the answers. The pages and their
// assets (/ui, /docs) are not operations and are left out. Text only (textContent), no HTML from
// the document, no external resource: the Content-Security-Policy allows this origin only.
"use strict";

let SCHEMAS = {};

// A schema with its $ref followed (and a nullable `anyOf [X, null]` read as X).
function resolve(schema) {
  let s = schema || {};
  for (let i = 0; i < 10 && s.$ref; i++) s = SCHEMAS[s.$ref.split("/").pop()] || {};
  if (s.allOf && s.allOf.length === 1) {
    return Object.assign({}, resolve(s.allOf[0]), s.description ? { description: s.description } : {},
      s.default !== undefined ? { default: s.default } : {});
  }
  if (s.anyOf) {
    const other = s.anyOf.find((x) => x.type !== "null");
    if (other) return Object.assign({}, resolve(other), { description: s.description || other.description });
  }
  return s;
}

// A type as a reader wants it: "string (date)", "integer ≥ 1", "one of a, b", "array of …".
function typeText(schema) {
  const s = resolve(schema);
  const type = Array.isArray(s.type) ? s.type.filter((t) => t !== "null").join(" or ") : s.type;
  if (s.enum) return `one of ${s.enum.join(", ")}`;
  if (s.oneOf) return "one of " + s.oneOf.map((x) => (x.enum || [x.const]).join(", ")).join(", ");
  if (type === "array") return `array of ${typeText(s.items)}`;
  const limits = [];
  if (s.format) limits.push(s.format);
  if (s.pattern) limits.push(`matching ${s.pattern}`);
  if (s.minimum !== undefined) limits.push(`≥ ${s.minimum}`);
  if (s.maximum !== undefined) limits.push(`≤ ${s.maximum}`);
  if (s.minLength !== undefined) limits.push(`length ≥ ${s.minLength}`);
  if (s.maxLength !== undefined) limits.push(`length ≤ ${s.maxLength}`);
  return (type || (s.properties ? "object" : "any")) + (limits.length ? ` (${limits.join(", ")})` : "");
}

// An example value for a schema (its own example or default when it has one).
function example(schema, depth = 0) {
  const s = resolve(schema);
  if (s.example !== undefined) return s.example;
  if (s.default !== undefined) return s.default;
  if (s.enum) return s.enum[0];
  if (s.oneOf) return (s.oneOf[0].enum || [s.oneOf[0].const])[0];
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  if (depth > 4) return null;
  if (type === "object" || s.properties) {
    const out = {};
    for (const [name, prop] of Object.entries(s.properties || {})) out[name] = example(prop, depth + 1);
    return out;
  }
  if (type === "array") return [example(s.items, depth + 1)];
  if (type === "integer" || type === "number") return s.minimum !== undefined ? s.minimum : 1;
  if (type === "boolean") return true;
  if (s.format === "date-time") return "2026-12-06T10:00:00Z";
  if (s.format === "date") return "2026-12-06";
  return "…";
}

// A body's fields (one row each) and an example of the whole body.
function bodyBlock(title, schema) {
  const s = resolve(schema);
  const required = new Set(s.required || []);
  const rows = Object.entries(s.properties || {}).map(([name, prop]) =>
    [name, typeText(prop), required.has(name) ? "required" : "optional", resolve(prop).description || prop.description || ""]);
  return el("div", { class: "schema" },
    el("h4", {}, title),
    rows.length ? table(["field", "type", "", "description"], rows) : el("p", {}, typeText(s)),
    el("pre", { class: "example" }, JSON.stringify(example(s), null, 2)));
}

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
  const bodySchema = op.requestBody && op.requestBody.content["application/json"]
    ? op.requestBody.content["application/json"].schema : null;
  const body = bodySchema ? schemaName(bodySchema) : "none";
  const responses = Object.entries(op.responses || {}).map(([code, r]) => [code, r.description]);
  const success = Object.entries(op.responses || {}).find(([code, r]) =>
    code.startsWith("2") && r.content && r.content["application/json"]);
  const details = el("details", { "data-search": `${method} ${path} ${op.summary || ""}`.toLowerCase() },
    el("summary", {},
      el("span", { class: `method ${method}` }, method),
      el("span", { class: "path" }, path),
      el("span", { class: "summary" }, op.summary || "")),
    el("div", { class: "body" },
      el("p", {}, `Credentials: ${security}. Request body: ${body}.`),
      params.length ? table(["parameter", "in", "", "accepts", "description"], params) : "",
      bodySchema ? bodyBlock("Request body", bodySchema) : "",
      success ? bodyBlock(`Answer ${success[0]}`, success[1].content["application/json"].schema) : "",
      table(["status", "meaning"], responses)));
  return details;
}

async function render() {
  const main = document.getElementById("operations");
  const response = await fetch("/openapi.json");
  const doc = await response.json();
  SCHEMAS = (doc.components && doc.components.schemas) || {};
  main.replaceChildren();
  for (const [path, item] of Object.entries(doc.paths)) {
    // The pages and their assets are not API operations.
    if (path === "/ui" || path.startsWith("/ui/") || path === "/docs" || path.startsWith("/docs/")) continue;
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

// Starts the vendored ReDoc (global Redoc) on the API's own OpenAPI document; the URL is resolved
// from this module's URL so that a proxy sub-path keeps working. No web fonts: ReDoc falls back to
// the system fonts instead of asking Google Fonts.
const openapi = new URL("../../../openapi.json", import.meta.url).href;

window.Redoc.init(openapi, { hideDownloadButton: false, expandResponses: "200,201" }, document.getElementById("redoc"));

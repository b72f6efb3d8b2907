// The languages a model understands: from /api/languages when the server has it,
// otherwise Whisper's own list for multilingual models and English for ".en" models.

// Whisper's language codes (faster_whisper.tokenizer._LANGUAGE_CODES).
const WHISPER_CODES = (
  "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he " +
  "hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl " +
  "nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz " +
  "vi yi yo zh yue"
).split(" ");

// Codes Whisper spells differently from BCP 47, for the display name.
const DISPLAY_ALIASES = { jw: "jv" };

let endpointMissing = false; // asked once: the endpoint is optional

const names = new Intl.DisplayNames(["en"], { type: "language", fallback: "code" });

export function languageName(code) {
  try {
    return names.of(DISPLAY_ALIASES[code] ?? code);
  } catch {
    return code;
  }
}

// [{code, name}] sorted by name, without "auto" (the caller offers that itself).
export async function languagesFor(model, fetchJson) {
  let listed = null;
  if (!endpointMissing) {
    try {
      listed = parseLanguages(await fetchJson(`/api/languages?model=${encodeURIComponent(model.name)}`));
    } catch {
      endpointMissing = true;
    }
  }
  listed ??= (model.multilingual ? WHISPER_CODES : ["en"]).map((code) => ({ code }));
  return listed
    .filter(({ code }) => typeof code === "string" && code && code !== "auto")
    .map(({ code, name }) => ({ code, name: name || languageName(code) }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

// Accepts {languages: [{code, name}, …]} (the gateway's answer), or a bare list of codes.
function parseLanguages(body) {
  const list = Array.isArray(body) ? body : body?.languages;
  if (!Array.isArray(list) || !list.length) return null;
  return list.map((item) => (typeof item === "string" ? { code: item } : { code: item?.code, name: item?.name }));
}

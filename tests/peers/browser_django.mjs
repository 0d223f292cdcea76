// A Django app (django_app/, mozilla-django-oidc) signs a user in through gatehouse, in
// Debian's Chromium (never a downloaded browser): the app's home page, its Sign in link to
// gatehouse's authorization endpoint, gatehouse's e-mail page, the org's connection, the
// pysaml2 IdP (saml_idp_server.py, which posts its SAMLResponse at once), gatehouse's ACS and
// back to the app's callback, where mozilla-django-oidc exchanges the code; the app's home
// page then shows who signed in. Screenshots go to SCREENSHOT_DIR.
// Usage: node browser_django.mjs DJANGO_URL GATEHOUSE_URL EMAIL -> prints what the pages said.
import { journey, shot, submit, text } from './admin_pages.mjs';

const [django, base, email] = process.argv.slice(2);
await journey(async (page) => {
  const out = {};
  await page.goto(`${django}/`);
  out.anonymous = await text(page, '#sign-in');
  await shot(page, 'django-signed-out');
  // The app's /oidc/authenticate/ -> gatehouse's /sso/oauth2/authorize -> its e-mail page.
  await submit(page, '#sign-in');
  out.login_url = page.url();
  if (!out.login_url.startsWith(`${base}/sso/login?`)) throw new Error(`not gatehouse's e-mail page: ${out.login_url}`);
  await page.fill('#email', email);
  await shot(page, 'gatehouse-email');
  await submit(page, 'button[type=submit]');
  out.connection = await text(page, 'a.sso-connection');
  await shot(page, 'gatehouse-connection');
  // The IdP's page posts itself to gatehouse's ACS; gatehouse sends the browser to the app's
  // callback, and the app to its home page (or to /?failed=1).
  await Promise.all([
    page.waitForURL((u) => u.origin === django && u.pathname === '/', { timeout: 30000 }),
    page.click('a.sso-connection'),
  ]);
  out.url = page.url();
  await shot(page, 'django-signed-in');
  for (const id of ['name', 'email', 'org', 'role', 'sub', 'userinfo-email', 'userinfo-org',
    'userinfo-role', 'django-email']) {
    out[id] = await text(page, `#${id}`);
  }
  out.cookies = (await page.context().cookies()).map((c) => c.name).sort();
  return out;
});

// Drives Debian's Chromium (never a downloaded browser) through an email-first sign-in:
// /sso/login -> the IdP -> gatehouse (ACS or OIDC callback) -> /sso/complete -> return_to.
// Usage: node browser_sign_in.mjs BASE_URL EMAIL [IDP_LOGIN]  -> prints {"url", "text"} of the
// final page. With IDP_LOGIN, the IdP shows a login form (oidc-provider's) that is filled in;
// without it the IdP answers at once (saml_idp_server.py).
import { chromium } from 'playwright-core';

const [base, email, idpLogin] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await browser.newPage();
  await page.goto(`${base}/sso/login?return_to=%2Fsso%2Fme`);
  await page.fill('#email', email);
  // The domain has SSO but does not require it: the page offers its connection.
  await Promise.all([
    page.waitForSelector('a.sso-connection', { timeout: 30000 }),
    page.click('button[type=submit]'),
  ]);
  if (idpLogin) {
    await Promise.all([
      page.waitForSelector('input[name=login]', { timeout: 30000 }),
      page.click('a.sso-connection'),
    ]);
    await page.fill('input[name=login]', idpLogin);
    await page.fill('input[name=password]', 'any password');
    await Promise.all([
      page.waitForURL(`${base}/sso/me`, { timeout: 30000 }),
      page.click('button[type=submit]'),
    ]);
  } else {
    await Promise.all([
      page.waitForURL(`${base}/sso/me`, { timeout: 30000 }),
      page.click('a.sso-connection'),
    ]);
  }
  const text = await page.textContent('#user-name');
  console.log(JSON.stringify({ url: page.url(), text }));
} finally {
  await browser.close();
}
